"""One durable queue for every outgoing message: e-mail, Telegram, and what comes next.

* `model`: the typed records (NewDelivery, Delivery) and a transport's answers (Sent,
  Retry, Dead); the Transport and OutcomeHook interfaces.
* `store`: all SQL on the `deliveries` table; the only place that inserts (enqueue).
* `worker`: claims due deliveries with a lease, sends each through its transport, records
  the outcome, one backoff policy, one dead-letter path, and calls the domain's hook.
* `smtp`: the SMTP transport (mail sent as stored bytes, same Message-ID on every retry).
"""
