"""Features around the gifting loop: moderation, battles, overlay keys and settings, pushes.

Above the hub (they ride room events and the room's slot), below the edge and web that expose them.
"""
