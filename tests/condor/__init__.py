"""A stand-in for HTCondor's command-line tools (see README): no HTCondor daemons exist here."""
