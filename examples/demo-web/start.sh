# web's start script (examples/demo.yaml): its kernel command line mounts this disk on
# /mnt and runs this. tools/demo packs this directory into build/demo/web.img.
ip addr add 10.0.1.1/24 dev eth0 && ip link set eth0 up      # the p2p link to client
ip addr add 10.0.2.1/24 dev eth1 && ip link set eth1 up      # the switch lan, with third
httpd -h /mnt && echo 'web: serving /mnt/index.html on 10.0.1.1 (client) and 10.0.2.1 (lan)'
# Then a shell on the console, for Ctrl-A 1.
exec setsid cttyhack sh
