"""The live hub: rooms, the pub/sub broker, fan-out, recovery, room state, combo sweeping."""
