"""amoCRM API v4: the client (:mod:`.client`), tokens (:mod:`.auth`) and the sync (:mod:`.sync`)."""
