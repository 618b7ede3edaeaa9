# One Consul server with the UI for docker-compose; quorumq containers reach it at
# consul:8500 (--consul consul:8500) and the UI is published on the host's 127.0.0.1:8500
# (log in with the management token of the secrets volume, consul/management.token).
#   consul agent -config-file /consul/config/compose.hcl
# Registrations survive a container restart when data_dir is a volume.
datacenter       = "dc1"
node_name        = "consul"
server           = true
bootstrap        = true
data_dir         = "/consul/data"
client_addr      = "0.0.0.0"
bind_addr        = "{{ GetInterfaceIP \"eth0\" }}"
log_level        = "INFO"

ui_config {
  enabled = true
}

# ACLs on, everything denied without a token: the management and agent tokens come from
# the secrets volume (a second -config-file, made by `quorumq cert init`); the quorumq
# services get tokens of their own (consul/config/acl-init.sh).
acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
}

ports {
  http     = 8500
  https    = -1
  dns      = -1
  grpc     = -1
  grpc_tls = -1
  serf_wan = -1
}
