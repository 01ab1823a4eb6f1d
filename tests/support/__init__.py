"""What fault tests set up, each once: free ports and real processes (``processes``), ``dispatcher
run`` workers sending to an SMTP server of their own (``workers``, ``sink``), ``dispatcher web``
(``web``), a private PostgreSQL cluster to stop and a small disk to fill (``postgres``, ``disk``),
and a proxy that falls silent (``silent_proxy``)."""
