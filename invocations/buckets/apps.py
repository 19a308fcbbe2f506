from django.apps import AppConfig


class BucketsConfig(AppConfig):
    name = "invocations.buckets"
    label = "buckets"
