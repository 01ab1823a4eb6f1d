"""What tests share and no test collects: fakes of the outside world (the fax providers in
``fax_servers``, ``smtp_server``, ``asgi_server`` for a fake or our app in a thread,
``web_client``), and what fault tests set up, each once: free ports and real processes
(``processes``), ``dispatcher run`` workers sending to an SMTP server of their own (``workers``,
``sink``), ``dispatcher web`` (``web``), a private PostgreSQL cluster to stop and a small disk
to fill (``postgres``, ``disk``), and a proxy that falls silent (``silent_proxy``)."""
