# Users and groups (the "instructor" group included) are managed through
# django.contrib.auth's own admin; this app adds no models of its own.
