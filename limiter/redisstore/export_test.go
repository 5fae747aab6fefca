package redisstore

// GCRAScriptHash is the SHA1 of the script a Store runs for Take and Peek:
// gcra.lua with lib.lua in front of it (see withLib), as EVALSHA names it.
var GCRAScriptHash = gcraScript.Hash()
