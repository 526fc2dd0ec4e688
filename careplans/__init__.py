"""CarePlan scheduling: recurring CarePlan activities materialised into Task resources, in the
patient's local time, idempotently (timing.py: the schedule maths; activities.py: what a plan asks
for; materialize.py: the Tasks; jobs.py and tasks.py: when)."""
