"""Calls: everything that talks to a model — the litellm client, the scheduler every call is
admitted by, the embedded local server, the seam where the call store wraps every call, and
hook calls that stand in for model or judge calls."""
