# One process answering TCP on DIP:PORT inside many VM namespaces (benchmark only): Node cannot
# setns, and a process per VM would not fit this machine at 1,000 VMs. For each namespace named on
# stdin ("NS DIP" per line) it enters the namespace (setns), makes a listening socket there (a socket
# stays in the namespace it was made in) and comes back; then it answers every connection with a
# short HTTP response. Prints "ready N" once every socket listens. Exits when stdin closes.
import ctypes, os, resource, selectors, socket, sys, threading

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
port = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
home = os.open('/proc/self/ns/net', os.O_RDONLY)
sel = selectors.DefaultSelector()
entries = [l.split() for l in sys.stdin.readline().strip().split(',') if l]
for ns, dip in entries:
    fd = os.open(f'/run/netns/{ns}', os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), f'setns {ns}')
    os.close(fd)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IP, 15, 1)  # IP_FREEBIND: the DIP may not be on eth0 yet
    s.bind((dip, port))
    s.listen(64)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
libc.setns(home, CLONE_NEWNET)
print(f'ready {len(entries)}', flush=True)
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
body = b'HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n'
while True:
    for key, _ in sel.select():
        try:
            c, _ = key.fileobj.accept()
            c.setblocking(True)
            c.settimeout(1)
            c.sendall(body)
            c.close()
        except OSError:
            pass
