"""`make load-move`: issue 11's targets for moving a large tenant while everyone is served.

Ten tenants get per-tenant load (Zipf weights; reads, creates, renames, deletes, every
acknowledged write recorded by the client); the heaviest is made large (MOVE_ROWS users)
and moved shared -> dedicated -> shared through the admin API while the load runs. Every
figure is printed beside its target (docs/scaling.md §7).
"""
