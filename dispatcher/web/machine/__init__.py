"""What programs call: the CRM API, /metrics and /healthz, providers' webhooks, fax media."""
