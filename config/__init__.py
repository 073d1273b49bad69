# Empty on purpose: `make run`'s supervisor (python -m config.run) imports this package and needs
# nothing of Django or Celery (importing the Celery app here cost it 19 MB). Django loads the
# Celery app at start-up in labs/apps.py, so @shared_task binds to it; `celery -A config` finds
# config/celery.py by itself.
