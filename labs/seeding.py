"""What a new lab run starts with: synthetic users, versioned templates in two or more locales.

Seeded from the run's id, so a run always gets the same cast and a reset brings it back.
"""

import random
from datetime import time

from labs.models import LabRun, Recipient, StockLevel, Template, TemplateCategory

USERS_PER_RUN = 50
# What the inventory service of a run's order saga (lab 7) starts with: one product, its stock and price.
PRODUCT_SKU = "mug"
PRODUCT_STOCK = 100
PRODUCT_PRICE_CENTS = 1200
FIRST_NAMES = ["Ada", "Grace", "Linus", "Barbara", "Edsger", "Frances", "Ken", "Margaret", "Alan", "Radia",
               "Donald", "Hedy", "Dennis", "Katherine", "Tim", "Annie", "Guido", "Shafi", "Leslie", "Sophie"]  # fmt: skip
LOCALES = [("en", "Europe/London"), ("en", "America/New_York"), ("fr", "Europe/Paris"), ("de", "Europe/Berlin"),
           ("es", "America/Mexico_City"), ("en", "Asia/Singapore"), ("fr", "America/Montreal")]  # fmt: skip

TEMPLATES = [
    ("security_alert", TemplateCategory.SECURITY, ["email", "push"], {
        "en": {"subject": "New sign-in to your account",
               "body": "Hi {name}, someone signed in from {device}. If it was not you, reset your password now."},
        "fr": {"subject": "Nouvelle connexion à votre compte",
               "body": "Bonjour {name}, une connexion depuis {device} a eu lieu. Si ce n'était pas vous, changez votre mot de passe."},
        "de": {"subject": "Neue Anmeldung bei Ihrem Konto",
               "body": "Hallo {name}, jemand hat sich von {device} angemeldet. Waren Sie das nicht, ändern Sie Ihr Passwort."},
    }),
    ("password_reset", TemplateCategory.SECURITY, ["email"], {
        "en": {"subject": "Your password reset code", "body": "Hi {name}, your code is {code}. It expires in 15 minutes."},
        "fr": {"subject": "Votre code de réinitialisation", "body": "Bonjour {name}, votre code est {code}. Il expire dans 15 minutes."},
    }),
    ("order_shipped", TemplateCategory.TRANSACTIONAL, ["email", "push"], {
        "en": {"subject": "Order {order_id} is on its way", "body": "Good news, {name}: order {order_id} has shipped."},
        "fr": {"subject": "La commande {order_id} est en route", "body": "Bonne nouvelle, {name} : la commande {order_id} est expédiée."},
        "es": {"subject": "El pedido {order_id} está en camino", "body": "Buenas noticias, {name}: el pedido {order_id} ya salió."},
    }),
    ("weekly_digest", TemplateCategory.MARKETING, ["email"], {
        "en": {"subject": "Your week in review", "body": "Hi {name}, here are {count} things you missed this week."},
        "fr": {"subject": "Votre semaine en bref", "body": "Bonjour {name}, voici {count} nouveautés de la semaine."},
        "de": {"subject": "Ihre Woche im Überblick", "body": "Hallo {name}, hier sind {count} Neuigkeiten der Woche."},
    }),
    ("order_confirmed", TemplateCategory.TRANSACTIONAL, ["email"], {
        "en": {"subject": "Order {order_id} is confirmed", "body": "Thank you, {name}: order {order_id} is confirmed."},
        "fr": {"subject": "Commande {order_id} confirmée", "body": "Merci, {name} : la commande {order_id} est confirmée."},
    }),
    ("order_cancelled", TemplateCategory.TRANSACTIONAL, ["email"], {
        "en": {"subject": "Order {order_id} was cancelled", "body": "Sorry, {name}: we could not complete order {order_id}, and nothing was charged."},
        "fr": {"subject": "Commande {order_id} annulée", "body": "Désolés, {name} : la commande {order_id} n'a pas pu aboutir, rien n'a été débité."},
    }),
    ("inapp_message", TemplateCategory.TRANSACTIONAL, ["inapp"], {
        "en": {"subject": "", "body": "{text}"},
        "fr": {"subject": "", "body": "{text}"},
    }),
]  # fmt: skip


def seed(run: LabRun) -> None:
    rng = random.Random(run.pk)
    recipients = []
    for number in range(1, USERS_PER_RUN + 1):
        first = FIRST_NAMES[(number - 1) % len(FIRST_NAMES)]
        locale, zone = rng.choice(LOCALES)
        quiet = rng.random() < 0.4
        recipients.append(
            Recipient(
                run=run,
                number=number,
                name=f"{first} {chr(ord('A') + (number - 1) // len(FIRST_NAMES))}.",
                email=f"{first.lower()}.{number}@example.test",
                phone=f"+1555{number:07d}",
                device_token=f"device-{run.pk}-{number:03d}",
                locale=locale,
                timezone=zone,
                email_opt_in=rng.random() > 0.1,
                sms_opt_in=rng.random() > 0.3,
                push_opt_in=rng.random() > 0.2,
                inapp_opt_in=True,
                quiet_start=time(22, 0) if quiet else None,
                quiet_end=time(7, 0) if quiet else None,
            )
        )
    Recipient.objects.bulk_create(recipients)
    Template.objects.bulk_create(
        Template(run=run, name=name, version=1, category=category, channels=channels, bodies=bodies)
        for name, category, channels, bodies in TEMPLATES
    )
    seed_stock(run)


def seed_stock(run: LabRun) -> None:
    """The inventory of the run's shop, if it has none yet (a run made before lab 7 existed has none)."""
    StockLevel.objects.get_or_create(run=run, sku=PRODUCT_SKU, defaults={"initial": PRODUCT_STOCK, "available": PRODUCT_STOCK})
