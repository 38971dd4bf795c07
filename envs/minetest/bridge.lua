-- worldsim bridge: a world mod that lets `worldsim.envs.minetest` drive the game through two files
-- in the world directory. Python replaces worldsim_cmd.txt atomically with one line
-- "<seq> <command> <args...>"; each server step this mod runs a command it has not seen yet and
-- writes worldsim_state.txt (atomically, minetest.safe_file_write) as
-- "<last seq done> <x> <y> <z> <yaw deg> <pitch deg> <server time s>".
local world = minetest.get_worldpath()
local cmd_path = world .. "/worldsim_cmd.txt"
local state_path = world .. "/worldsim_state.txt"
local NAME = "worldsim"
local water_level = tonumber(minetest.get_mapgen_setting("water_level")) or 1
local TOP = 160  -- highest node a start is searched from; mapgen v7 mountains stay below it

local last_seq = -1   -- the last command read
local done_seq = -1   -- the last command finished (a reset finishes once its area is generated)
local elapsed = 0
local origin = nil  -- where the engine first put the player (its spawn search is the same for the same map seed)

-- Chat off: nothing may write over the frames, so messages go to the log instead.
minetest.get_server_status = function() return "" end
minetest.send_join_message = function() end
minetest.send_leave_message = function() end
minetest.chat_send_all = function(text) minetest.log("action", "[chat] " .. text) end
minetest.chat_send_player = function(_, text) minetest.log("action", "[chat] " .. text) end

local function player() return minetest.get_player_by_name(NAME) end

local function quiet_hud(p)
  p:hud_set_flags({hotbar = false, healthbar = false, crosshair = false, wielditem = false,
                   breathbar = false, minimap = false, minimap_radar = false, basic_debug = false})
end

-- The top of the first non-air node going down (x, z) from y1 to y0 once that column is generated,
-- and whether a player may start on it: solid, not a tree, two nodes of air above it under open sky,
-- not below the sea (a riverbed, a ravine). nil when the column is all air.
local function ground(x, z, y0, y1)
  for y = y1, y0, -1 do
    local name = minetest.get_node({x = x, y = y, z = z}).name
    if name ~= "air" then
      local def = minetest.registered_nodes[name]
      local feet = {x = x, y = y + 1, z = z}
      local ok = def and def.walkable and (def.liquidtype or "none") == "none"
        and minetest.get_item_group(name, "leaves") == 0 and minetest.get_item_group(name, "tree") == 0
        and y >= water_level and minetest.get_node({x = x, y = y + 2, z = z}).name == "air"
        and (minetest.get_node_light(feet, 0.5) or 0) >= 14
      return feet, ok
    end
  end
  return nil, false
end

local function place(seq, p, pos, yaw)
  minetest.log("action", string.format("[worldsim] reset %d: start (%d, %d, %d), yaw %.1f", seq, pos.x, pos.y, pos.z, yaw))
  local r = {x = 48, y = 32, z = 48}
  minetest.emerge_area(vector.subtract(pos, r), vector.add(pos, r), function(_, _, remaining)
    if remaining > 0 then return end
    p:set_pos(pos)
    p:set_look_horizontal(math.rad(yaw))
    p:set_look_vertical(0)
    p:set_hp(p:get_properties().hp_max)
    p:get_inventory():set_list("main", {"default:dirt 99"})
    quiet_hud(p)
    done_seq = seq
  end)
end

-- The same start for the same candidates ("dx dz yaw" triples, offsets from the engine's spawn
-- point): the first whose column has open ground (`ground`); the top of the last candidate's
-- column (maybe water) when none has.
local function reset(seq, args)
  local p = player()
  local function try(i)
    local x, z, yaw = origin.x + tonumber(args[i]), origin.z + tonumber(args[i + 1]), tonumber(args[i + 2])
    local lo, hi = {x = x, y = water_level - 16, z = z}, {x = x, y = TOP, z = z}
    minetest.emerge_area(lo, hi, function(_, _, remaining)
      if remaining > 0 then return end
      local feet, ok = ground(x, z, lo.y, hi.y)
      if ok or i + 3 > #args - 2 then
        place(seq, p, feet or {x = x, y = water_level + 1, z = z}, yaw)
      else
        try(i + 3)
      end
    end)
  end
  try(1)
end

local function read_command()
  local f = io.open(cmd_path, "r")
  if not f then return end
  local line = f:read("*l")
  f:close()
  if not line then return end
  local words = {}
  for w in line:gmatch("%S+") do words[#words + 1] = w end
  local seq = tonumber(words[1])
  if not seq or seq <= last_seq then return end
  last_seq = seq
  local name = words[2]
  if name == "reset" then
    reset(seq, {select(3, unpack(words))})
  else
    minetest.log("error", "[worldsim] unknown command " .. tostring(name))
    done_seq = seq
  end
end

minetest.register_on_joinplayer(function(p)
  origin = origin or vector.round(p:get_pos())
  quiet_hud(p)
  minetest.set_timeofday(0.5)
end)

minetest.register_globalstep(function(dtime)
  elapsed = elapsed + dtime
  local p = player()
  if not p then return end
  read_command()
  local pos = p:get_pos()
  minetest.safe_file_write(state_path, string.format("%d %.4f %.4f %.4f %.4f %.4f %.4f\n", done_seq,
    pos.x, pos.y, pos.z, math.deg(p:get_look_horizontal()), math.deg(p:get_look_vertical()), elapsed))
end)
