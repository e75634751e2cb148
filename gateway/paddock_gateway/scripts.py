"""The Lua scripts that make each change to a session atomic in Redis.

Every script gets the session's keys in the same order (see store.SessionKeys.all):

    KEYS[1] meta     hash: namespace, agent, created, state, turns, model, and the turn in flight
                     (turn, turn_item, inc, seq: the last runner event stored)
    KEYS[2] events   stream: the session's events; entry id = the clients' cursor
    KEYS[3] inbox    list: accepted messages waiting for their turn
    KEYS[4] msgids   hash: client message id -> digest of the message (idempotency)
    KEYS[5] history  list: the conversation so far (OpenAI chat messages as JSON)
    KEYS[6] pending  list: messages the runner produced in the turn's current incarnation
    KEYS[7] lease    string: token of the replica driving the session's turns (expires)
    KEYS[8] active   set (shared): sessions with a turn in flight or queued

Scripts that drive turns take the caller's lease token and change nothing unless it still holds
the lease, so a replica that lost its lease (paused, partitioned) cannot write behind the back
of the one that took over.
"""

from __future__ import annotations

from typing import Final

_PRELUDE = """
local function touch(ttl)
  for i = 1, 6 do redis.call('EXPIRE', KEYS[i], ttl) end
end
local function holds(token)
  return redis.call('GET', KEYS[7]) == token
end
local function add(maxlen, kind, event)
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 't', kind, 'e', event)
end
local function alive()
  local state = redis.call('HGET', KEYS[1], 'state')
  return state and state ~= 'deleted'
end
local function finish()
  local item = cjson.decode(redis.call('HGET', KEYS[1], 'turn_item'))
  redis.call('RPUSH', KEYS[5], item['message'])
  for _, message in ipairs(redis.call('LRANGE', KEYS[6], 0, -1)) do
    redis.call('RPUSH', KEYS[5], message)
  end
  redis.call('DEL', KEYS[6])
  redis.call('HSET', KEYS[1], 'turn', '', 'turn_item', '', 'inc', '', 'seq', '0', 'state', 'idle')
  redis.call('HINCRBY', KEYS[1], 'turns', 1)
end
"""

# ARGV: ttl, maxlen, session id, message id, digest, inbox item, user_message event
POST_MESSAGE: Final = (
    _PRELUDE
    + """
if not alive() then return {'gone'} end
local previous = redis.call('HGET', KEYS[4], ARGV[4])
if previous then
  if previous == ARGV[5] then return {'duplicate'} end
  return {'conflict'}
end
redis.call('HSET', KEYS[4], ARGV[4], ARGV[5])
redis.call('RPUSH', KEYS[3], ARGV[6])
local id = add(ARGV[2], 'user_message', ARGV[7])
redis.call('SADD', KEYS[8], ARGV[3])
touch(ARGV[1])
return {'accepted', id}
"""
)

# ARGV: ttl, maxlen, session id, token
NEXT_TURN: Final = (
    _PRELUDE
    + """
if not holds(ARGV[4]) then return {'lease_lost'} end
if not alive() then
  redis.call('DEL', KEYS[7])
  redis.call('SREM', KEYS[8], ARGV[3])
  return {'gone'}
end
local turn = redis.call('HGET', KEYS[1], 'turn')
if turn and turn ~= '' then
  local fields = redis.call('HMGET', KEYS[1], 'turn_item', 'inc', 'seq')
  return {'current', fields[1], fields[2], fields[3]}
end
local item = redis.call('LPOP', KEYS[3])
if not item then
  redis.call('DEL', KEYS[7])
  redis.call('SREM', KEYS[8], ARGV[3])
  return {'idle'}
end
local turn_id = cjson.decode(item)['turn_id']
redis.call('HSET', KEYS[1], 'turn', turn_id, 'turn_item', item, 'inc', '', 'seq', '0',
           'state', 'running')
redis.call('DEL', KEYS[6])
add(ARGV[2], 'turn_start', cjson.encode({type = 'turn_start', data = {turn_id = turn_id}}))
touch(ARGV[1])
return {'new', item, '', '0'}
"""
)

# ARGV: token, turn id, incarnation
BEGIN_INCARNATION: Final = (
    _PRELUDE
    + """
if not holds(ARGV[1]) then return 'lease_lost' end
if not alive() then return 'gone' end
if redis.call('HGET', KEYS[1], 'turn') ~= ARGV[2] then return 'stale' end
if redis.call('HGET', KEYS[1], 'inc') == ARGV[3] then return 'same' end
redis.call('HSET', KEYS[1], 'inc', ARGV[3], 'seq', '0')
redis.call('DEL', KEYS[6])
return 'new'
"""
)

# ARGV: ttl, maxlen, token, turn id, incarnation, then per event: seq, type, event, message|''
# Appends each event whose seq is the next one; skips those already stored (a replay).
# Returns {verdict, how many were added, the last seq stored}.
INGEST: Final = (
    _PRELUDE
    + """
if not holds(ARGV[3]) then return {'lease_lost', 0, 0} end
if not alive() then return {'gone', 0, 0} end
local meta = redis.call('HMGET', KEYS[1], 'turn', 'inc', 'seq')
if meta[1] ~= ARGV[4] or meta[2] ~= ARGV[5] then return {'stale', 0, 0} end
local last = tonumber(meta[3])
local added = 0
local verdict = 'ok'
for i = 6, #ARGV, 4 do
  local seq = tonumber(ARGV[i])
  if seq == last + 1 then
    add(ARGV[2], ARGV[i + 1], ARGV[i + 2])
    last = seq
    added = added + 1
    if ARGV[i + 3] ~= '' then redis.call('RPUSH', KEYS[6], ARGV[i + 3]) end
    if ARGV[i + 1] == 'turn_end' then
      verdict = 'ended'
      break
    end
  elseif seq > last + 1 then
    verdict = 'gap'
    break
  end
end
if verdict == 'ended' then
  finish()
else
  redis.call('HSET', KEYS[1], 'seq', last)
end
touch(ARGV[1])
return {verdict, added, last}
"""
)

# ARGV: ttl, maxlen, token, turn id, error event, turn_end event
FAIL_TURN: Final = (
    _PRELUDE
    + """
if not holds(ARGV[3]) or not alive() then return 0 end
if redis.call('HGET', KEYS[1], 'turn') ~= ARGV[4] then return 0 end
add(ARGV[2], 'error', ARGV[5])
add(ARGV[2], 'turn_end', ARGV[6])
redis.call('DEL', KEYS[6])
finish()
touch(ARGV[1])
return 1
"""
)

# ARGV: ttl, maxlen, token ('' when not driving a turn), type, event, new state ('' to keep)
APPEND: Final = (
    _PRELUDE
    + """
if ARGV[3] ~= '' and not holds(ARGV[3]) then return false end
if not alive() then return false end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'state', ARGV[6]) end
local id = add(ARGV[2], ARGV[4], ARGV[5])
touch(ARGV[1])
return id
"""
)

# ARGV: grace seconds, maxlen, session id, end event
# Returns the turn in flight ('' when none), which the runner should stop; false if already gone.
DELETE: Final = (
    _PRELUDE
    + """
if not alive() then return false end
local turn = redis.call('HGET', KEYS[1], 'turn') or ''
redis.call('HSET', KEYS[1], 'state', 'deleted')
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[8], ARGV[3])
add(ARGV[2], 'end', ARGV[4])
touch(ARGV[1])
return turn
"""
)

# ARGV: token, milliseconds
RENEW: Final = (
    _PRELUDE
    + """
if holds(ARGV[1]) then return redis.call('PEXPIRE', KEYS[7], ARGV[2]) end
return 0
"""
)

# ARGV: token
RELEASE: Final = (
    _PRELUDE
    + """
if holds(ARGV[1]) then return redis.call('DEL', KEYS[7]) end
return 0
"""
)
