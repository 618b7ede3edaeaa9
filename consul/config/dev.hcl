# A single-node development agent, as `quorumq dev` runs it (consul.StartAgent passes
# the same settings as flags):
#   consul agent -dev -config-file consul/config/dev.hcl
# State lives in memory: services must register again after a restart.
# ACLs are on with default deny; `quorumq dev` adds them in a second, 0600 config file
# (<data-dir>/consul/acl/acl.hcl) because it names the management token:
#   acl { enabled = true  default_policy = "deny"
#         tokens { initial_management = "<uuid>"  agent = "<uuid>" } }
client_addr = "127.0.0.1"
bind_addr   = "127.0.0.1"
log_level   = "INFO"

ui_config {
  enabled = true
}

# Only HTTP (API + UI on :8500), server RPC and LAN gossip are needed; the rest is off
# so that nothing else collides with other local services.
ports {
  http      = 8500
  https     = -1
  dns       = -1
  grpc      = -1
  grpc_tls  = -1
  serf_wan  = -1
  server    = 8300
  serf_lan  = 8301
}
