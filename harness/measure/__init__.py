"""How one step is measured, whatever the case: devices and their synchronisation, timing
and the heartbeat reference, statistics, memory, FLOPs, the machine's fingerprint.
"""
