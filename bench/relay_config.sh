# Shared by the bench scripts (sourced): the relay configuration of a loopback run.
# Every bot connects and creates its rooms from 127.0.0.1, so the per-IP and
# per-creator limits meant for the Internet are lifted.

# Prints the common configuration; callers append their own sections.
#   bench_relay_config PORT CERT_PATH
bench_relay_config() {
    cat <<CONFIG
listen = "127.0.0.1:$1"
empty_room_ttl_secs = 600
# Every bot creates its rooms from 127.0.0.1 too: lift the per-creator room limits.
max_rooms_per_creator = 100000
room_creations_per_minute = 1000000.0
room_creation_burst = 100000.0

[tls]
dev_cert_path = "$2"

# Every bot connects from 127.0.0.1: lift the per-IP caps meant for the Internet.
[connections]
max_connections = 20000
max_per_ip = 20000
handshakes_per_ip_per_second = 5000.0
handshake_burst = 5000.0
reserve_for_light_addresses = 0
CONFIG
}

# Prints the side-by-side arena room type (room for 16 more than the bots per room),
# and for rooms of more than about 300 seats a reliable queue that holds one tick's
# presence at its largest (a leave and a join per seat, 416 bytes each at most, two
# more messages and the room's metadata: the relay refuses a configuration where it
# does not fit, saying what it needs; 8 KiB covers the metadata).
#   bench_arena_room_type TICK_RATE MEMBERS NPCS
bench_arena_room_type() {
    local seats=$(($2 + 16))
    local messages=$((2 * seats + 2)) bytes=$((2 * seats * 416 + 8192))
    cat <<CONFIG

[room_types.arena]
simulation = "arena"
tick_rate = $1
max_members = $seats
arena_npcs = $3
CONFIG
    if ((messages > 1024 || bytes > 262144)); then
        printf '\n[session]\noutbox_max_messages = %d\noutbox_max_bytes = %d\n' \
            $((messages > 1024 ? messages : 1024)) $((bytes > 262144 ? bytes : 262144))
    fi
}

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
