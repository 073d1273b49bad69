# Users and groups (the "instructor" group included) are managed through
# django.contrib.auth's own admin; this app adds no models of its own.
from django.contrib import admin

from accounts.forms import AdminLoginForm

# The admin's log-in page says so when an account or address is over its failed log-in limit.
admin.site.login_form = AdminLoginForm
