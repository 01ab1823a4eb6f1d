"""Delivery plans: when and how many letters a target may receive (caps, office hours in its
time zone, public holidays), as action files say and the deployment defaults."""
