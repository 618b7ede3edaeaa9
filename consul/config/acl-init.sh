#!/bin/sh
# Run by docker-compose.yml's consul-acl service (the Consul image, with the management
# token): one ACL policy and one token per quorumq service, their secrets made by
# `quorumq cert init` in the secrets volume. A second run finds them and changes nothing.
set -eu
until consul acl token read -self >/dev/null 2>&1; do sleep 1; done
for svc in manager broker; do
  name=quorumq-$svc
  consul acl policy read -name "$name" >/dev/null 2>&1 ||
    consul acl policy create -name "$name" -description "quorumq $svc: registers itself, reads the catalog" -rules "
service \"$name\" { policy = \"write\" }
service_prefix \"\" { policy = \"read\" }
node_prefix \"\" { policy = \"read\" }"
  accessor=$(cat "/secrets/consul/$svc.accessor")
  consul acl token read -id "$accessor" >/dev/null 2>&1 ||
    consul acl token create -accessor "$accessor" -secret "$(cat "/secrets/consul/$svc.token")" \
      -policy-name "$name" -description "quorumq $svc"
done
