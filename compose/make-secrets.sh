#!/usr/bin/env sh
# Creates compose/secrets/ for a first run: random passwords, the DSNs built from them, the
# two keyrings (drfleet's format, mode 0600), and for the overrides a Redis TLS CA/server
# certificate and a message-signing key. Refuses to overwrite anything that exists.
# Needs openssl, and python3 able to import drfleet (the repository's .venv, or the image:
# PYTHON="docker run --rm -i -v $PWD/secrets:/out -w /out drfleet:local python").
set -eu
cd "$(dirname "$0")"
PYTHON=${PYTHON:-../.venv/bin/python}
umask 077
mkdir -p secrets
chmod 700 secrets
cd secrets

new() {  # new NAME VALUE: write a secret file once
  if [ -e "$1" ]; then echo "keep   secrets/$1"; else printf '%s\n' "$2" > "$1"; echo "create secrets/$1"; fi
}
random() { openssl rand -base64 33 | tr -d '/+=\n' | cut -c1-32; }

new redis_password "$(random)"
new redis_sentinel_password "$(random)"   # sentinels, replication (docker-compose.sentinel.yml)
new flower_password "$(random)"
new alerts_token "$(random)"
for store in eu_central us_east offsite; do
  new "minio_${store}_access_key" "drfleet-$(random | cut -c1-12)"
  new "minio_${store}_secret_key" "$(random)"
done
new orders_db_password "$(random)"
new orders_db_dsn "postgresql://orders:$(cat orders_db_password)@postgres-eu-central:5432/orders"
new catalog_db_password "$(random)"
new catalog_db_uri "mongodb://catalog:$(cat catalog_db_password)@mongodb-us-east:27017/?authSource=admin"
# the database images read their password file as their own user (postgres, mongodb)
chmod 644 orders_db_password catalog_db_password

for category in content offsite; do
  if [ -e "keyring_$category" ]; then echo "keep   secrets/keyring_$category"; else
    $PYTHON -c "import sys; from drfleet.backup_format.keyring import create_keyring; print(create_keyring(sys.argv[1], sys.argv[2]))" \
      "keyring_$category" "$category" >/dev/null
    echo "create secrets/keyring_$category (mode 0600)"
  fi
done

if [ ! -e redis-tls/ca.pem ]; then  # for docker-compose.tls.yml
  mkdir -p redis-tls
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=drfleet redis CA" \
    -keyout redis-tls/ca.key -out redis-tls/ca.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=redis" -keyout redis-tls/redis.key -out redis-tls/redis.csr 2>/dev/null
  printf 'subjectAltName=DNS:redis\n' > redis-tls/san.ext
  openssl x509 -req -in redis-tls/redis.csr -CA redis-tls/ca.pem -CAkey redis-tls/ca.key -CAcreateserial \
    -days 825 -extfile redis-tls/san.ext -out redis-tls/redis.pem 2>/dev/null
  rm -f redis-tls/redis.csr redis-tls/san.ext
  echo "create secrets/redis-tls/{ca.pem,redis.pem,redis.key}"
fi
if [ ! -e signing/fleet.key ]; then  # for docker-compose.signing.yml
  mkdir -p signing/trusted
  openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=drfleet fleet signer" \
    -keyout signing/fleet.key -out signing/fleet.pem 2>/dev/null
  cp signing/fleet.pem signing/trusted/fleet.pem
  echo "create secrets/signing/{fleet.key,fleet.pem,trusted/}"
fi
# certificates are public; the ones mounted as files must be readable by the containers
chmod 644 redis-tls/ca.pem redis-tls/redis.pem signing/fleet.pem signing/trusted/fleet.pem
chmod 755 redis-tls signing signing/trusted
