app_name = "queues"

urlpatterns = []
