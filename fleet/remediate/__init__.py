"""fleet remediate / fleet rollback: plan, lock, journal, apply, verify, undo; one host each.

context.py  what one run shares (journal, stop flag, settings) and the failures of a step
session.py  the `Remote` protocol (run one fleet script on a host), its SSH implementation,
            and the host session built on any Remote: probe, apply, exact reads
lock.py     the host's remediation lock: take (or take over when stale), release
host.py     the per-host state machine: plan, remediate, roll back over one session
undo.py     undoing journaled steps, last first
rollout.py  the fleet: canary and batches, failure budget, signals; plan and rollback fan-out
"""
