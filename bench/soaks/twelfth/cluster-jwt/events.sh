#!/bin/bash
cd /tmp/soak8
wait_until() { while [ $(date +%s) -lt $1 ]; do sleep 1; done; }
wait_until 1796333974; echo "$(date +%T) SIGTERM node2 pid $(cat pids/node2.pid)" >> events.log; kill -TERM $(cat pids/node2.pid)
for i in $(seq 1 15); do kill -0 $(cat pids/node2.pid) 2>/dev/null || break; sleep 1; done; echo "$(date +%T) node2 exited" >> events.log
wait_until 1796333989; ./start_node.sh 2; echo "$(date +%T) node2 restarted pid $(cat pids/node2.pid)" >> events.log
wait_until 1796334124; echo "$(date +%T) SIGKILL node3 pid $(cat pids/node3.pid)" >> events.log; kill -KILL $(cat pids/node3.pid)
wait_until 1796334134; ./start_node.sh 3; echo "$(date +%T) node3 restarted pid $(cat pids/node3.pid)" >> events.log
sleep 3; kill -0 $(cat pids/node3.pid) && echo "$(date +%T) node3 alive" >> events.log || echo "$(date +%T) node3 DIED at restart" >> events.log
