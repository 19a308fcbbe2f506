app_name = "buckets"

urlpatterns = []
