-- room_goal: set (or clear) the room's gift goal and tell every process.
-- KEYS[1] room goal (hash: title, target, progress)  KEYS[2] room channel
-- ARGV[1] title  ARGV[2] target coins (0 = clear the goal)
-- Returns the goal's progress (0 for a new goal). Progress restarts with each new goal.
if tonumber(ARGV[2]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[2], cmsgpack.pack({k = 'st', nogoal = true}))
  return 0
end
redis.call('HSET', KEYS[1], 'title', ARGV[1], 'target', ARGV[2], 'progress', 0)
redis.call('PUBLISH', KEYS[2], cmsgpack.pack({k = 'st',
  goal = {title = ARGV[1], target = tonumber(ARGV[2]), progress = 0}}))
return 0
