import secrets
import string

from django.conf import settings
from django.db import models
from django.utils import timezone

from functions import envvars

# AWS's shapes: a 20-character access key id starting AKIA, a 40-character secret.
KEY_ID_ALPHABET = string.ascii_uppercase + "234567"
SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
MAX_KEYS_PER_USER = 2  # IAM's limit per user; two, so that a key can be rotated without downtime


class AccessKey(models.Model):
    """A key pair that signs Lambda API requests (SigV4) as its user.

    SigV4 is an HMAC keyed with the secret itself, so the secret is stored retrievably: encrypted with the
    same Fernet keys as environment variables (settings.ENVIRONMENT_KEYS), never in clear, and shown to
    its user once, when it is created.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_keys")
    access_key_id = models.CharField(max_length=20, unique=True)
    secret_token = models.TextField(help_text="the secret access key, Fernet-encrypted")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return self.access_key_id

    @classmethod
    def issue(cls, user):
        """Create a key for `user`; return (key, secret). The secret is not retrievable from the page later."""
        secret = "".join(secrets.choice(SECRET_ALPHABET) for _ in range(40))
        key_id = "AKIA" + "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(16))
        key = cls.objects.create(user=user, access_key_id=key_id,
                                 secret_token=envvars.encrypt({"secret": secret}))
        return key, secret

    @property
    def secret(self):
        return envvars.decrypt(self.secret_token)["secret"]

    def deactivate(self):
        self.is_active = False
        self.save(update_fields=["is_active"])

    def activate(self):
        self.is_active = True
        self.save(update_fields=["is_active"])

    def touch(self):
        """Record a use; at most once a minute, so that a busy script does not write on every call."""
        now = timezone.now()
        if self.last_used_at is None or (now - self.last_used_at).total_seconds() >= 60:
            AccessKey.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now
