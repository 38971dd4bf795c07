"""Minetest (the open-source Minecraft-like voxel game) as a real world: `MinetestEnv` in `env`, the processes it owns in
`game`, XTest input and screen grabs in `xdisplay`, and the world mod it talks to in ``bridge.lua``."""
