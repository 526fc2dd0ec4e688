"""List dead letters (deliveries that ran out of retries) and send them again.

    manage.py subscription_retry --list
    manage.py subscription_retry --subscription <Subscription id>
    manage.py subscription_retry --delivery 12 --delivery 13
    manage.py subscription_retry --all

Retried deliveries start again with a fresh count of attempts and the same idempotency key; their
subscriptions leave `error` and are active again. Exit status 0 when done, 2 on bad input.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from subscriptions import worker
from subscriptions.models import Delivery, SubscriptionState


class Command(BaseCommand):
    help = "List dead subscription deliveries, or retry them (all, one subscription's, or given ones)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--list", action="store_true", help="list dead letters and exit")
        parser.add_argument(
            "--subscription", help="retry the dead letters of this Subscription (its FHIR id)"
        )
        parser.add_argument("--delivery", type=int, action="append", help="retry this delivery (repeatable)")
        parser.add_argument("--all", action="store_true", help="retry every dead letter")

    def handle(self, *args, **options) -> None:
        chosen = [
            bool(options["list"]),
            bool(options["subscription"]),
            bool(options["delivery"]),
            options["all"],
        ]
        if sum(chosen) != 1:
            raise CommandError("Give exactly one of --list, --subscription, --delivery, --all", returncode=2)
        if options["list"]:
            dead = Delivery.objects.filter(state=Delivery.DEAD).select_related("subscription").order_by("pk")
            for one in dead:
                self.stdout.write(
                    f"{one.pk}\tSubscription/{one.subscription.fhir_id}\t{one.action} "
                    f"{one.resource_type}/{one.fhir_id}\t{one.attempts} attempts\t{one.last_error}"
                )
            return
        subscription = options["subscription"]
        if subscription and not SubscriptionState.objects.filter(fhir_id=subscription).exists():
            raise CommandError(f"No Subscription '{subscription}'", returncode=2)
        pks = options["delivery"]
        if pks:
            known = set(Delivery.objects.filter(pk__in=pks, state=Delivery.DEAD).values_list("pk", flat=True))
            missing = sorted(set(pks) - known)
            if missing:
                raise CommandError(f"Not dead letters: {', '.join(map(str, missing))}", returncode=2)
        count = worker.retry_dead(pks, subscription=subscription)
        self.stdout.write(f"{count} deliveries queued again")
