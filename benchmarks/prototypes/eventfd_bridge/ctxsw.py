"""Voluntary/involuntary context switches per request, per thread (5 s wrk runs).

    python ctxsw.py "python serve.py --loop uvloop --drain py --sched-batch" 8066
"""
import os, subprocess, sys, time, signal, socket
def ctx(pid):
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        s = open(f"/proc/{pid}/task/{tid}/status").read()
        name = s.split("\n")[0].split("\t")[1]
        v = int(s.split("voluntary_ctxt_switches:\t")[1].split()[0])
        nv = int(s.split("nonvoluntary_ctxt_switches:\t")[1].split()[0])
        a = out.setdefault(name, [0, 0]); a[0] += v; a[1] += nv
    return out
cmd, port = sys.argv[1], int(sys.argv[2])
srv = subprocess.Popen(["taskset", "-c", "0"] + cmd.split() + ["--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1.5)
for c in (64, 1):
    subprocess.run(["taskset","-c","1","wrk","-t1",f"-c{c}","-d2s",f"http://127.0.0.1:{port}/"], capture_output=True)
    a = ctx(srv.pid)
    o = subprocess.run(["taskset","-c","1","wrk","-t1",f"-c{c}","-d5s",f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    b = ctx(srv.pid)
    n = int(o.split(" requests in")[0].split()[-1])
    print(cmd, f"c{c}", n, "req;", {k: (round((b[k][0]-a[k][0])/n, 3), round((b[k][1]-a[k][1])/n, 3)) for k in b if k in a}, "(voluntary, involuntary) per req")
srv.send_signal(signal.SIGTERM); srv.wait()
