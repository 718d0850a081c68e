#!/usr/bin/env python3
"""Writes samples/access.log: one day of a small API's nginx access log in the
`keywatch` log format (combined + $request_time + "$api_key_id", where nginx
logs only the first 16 characters of each X-API-Key with `map`).

The story the README walks through: five keys in use, one of them sent in the
query string by an old mobile-app build, one revoked key still deployed, one
partner key leaked through a Referer, a client trying random keys, scanners
sending garbage. The keys are demo keys made from a fixed seed; none is real.

Run: python3 samples/generate.py > samples/access.log
"""
import random
import string
import sys

rng = random.Random(20261127)
ALNUM = string.ascii_letters + string.digits


def key():
    return "kwdemo_" + "".join(rng.choice(ALNUM) for _ in range(33))


KEYS = {name: key() for name in ["billing-service", "mobile-app", "partner-acme", "reporting-cron", "legacy-widget"]}
LOGGED = 16  # characters of the key that nginx logs

UA = {
    "billing-service": "billing-svc/4.2 (python-requests/2.32)",
    "mobile-app": "AcmeMobile/3.9.1 (Android 14)",
    "mobile-app-old": "AcmeMobile/2.0.4 (Android 9)",
    "partner-acme": "acme-integration/1.7 Go-http-client/1.1",
    "reporting-cron": "curl/8.5.0",
    "legacy-widget": "widget/0.9 (PHP/7.2)",
    "browser": "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "scanner": "Mozilla/5.0 zgrab/0.x",
}
ENDPOINTS = ["/v1/invoices", "/v1/invoices/{id}", "/v1/customers/{id}", "/v1/charges", "/v1/reports/daily", "/v1/items"]
lines = []


def esc(s):
    out = []
    for ch in s.encode():
        if ch < 0x20 or ch in (0x22, 0x5C) or ch >= 0x7F:
            out.append("\\x%02X" % ch)
        else:
            out.append(chr(ch))
    return "".join(out)


def emit(t, ip, method, target, status, size, referer, ua, rt, key_value):
    hh, mm, ss = t // 3600, t // 60 % 60, t % 60
    stamp = "27/Nov/2026:%02d:%02d:%02d +0000" % (hh, mm, ss)
    request = f"{method} {target} HTTP/1.1" if method else target
    kid = key_value[:LOGGED] if key_value else "-"
    lines.append((t, f'{ip} - - [{stamp}] "{esc(request)}" {status} {size} "{esc(referer)}" "{esc(ua)}" {rt:.3f} "{kid}"'))


def endpoint():
    e = rng.choice(ENDPOINTS)
    return e.replace("{id}", str(rng.randint(1000, 99999)))


def rt(base):
    return max(0.001, rng.lognormvariate(base, 0.6))


# Steady traffic of the well-behaved keys.
for name, count, ips, base in [
    ("billing-service", 1100, ["203.0.113.10", "203.0.113.11"], -3.5),
    ("mobile-app", 520, [f"198.51.100.{i}" for i in range(30, 90)], -3.0),
    ("partner-acme", 300, ["192.0.2.44"], -2.8),
]:
    for _ in range(count):
        t = rng.randint(0, 86399)
        status = rng.choices([200, 201, 304, 404, 429, 500], [80, 5, 4, 6, 3 if name == "partner-acme" else 0.5, 0.7])[0]
        emit(t, rng.choice(ips), rng.choice(["GET", "GET", "GET", "POST"]), endpoint(), status,
             rng.randint(80, 9000) if status < 300 else 150, "-", UA[name], rt(base), KEYS[name])

# reporting-cron: a burst at the top of every hour.
for hour in range(24):
    for i in range(12):
        emit(hour * 3600 + i * 2, "2001:db8:40::7", "GET", f"/v1/reports/daily?page={i + 1}&limit=100", 200,
             rng.randint(20000, 90000), "-", UA["reporting-cron"], rt(-1.5), KEYS["reporting-cron"])

# An old mobile-app build still sends the key in the query string.
for _ in range(37):
    t = rng.randint(20000, 80000)
    emit(t, f"198.51.100.{rng.randint(90, 120)}", "GET",
         f"/v1/items?api_key={KEYS['mobile-app']}&limit=20", 200, rng.randint(500, 3000), "-",
         UA["mobile-app-old"], rt(-3.0), None)

# A revoked key, still deployed in a widget, rejected every few minutes.
for i in range(96):
    emit(i * 900 + 17, "192.0.2.200", "GET", "/v1/items", 401, 61, "-", UA["legacy-widget"], 0.002, KEYS["legacy-widget"])

# The partner's key was pasted into a dashboard URL, which browsers send on as Referer.
for _ in range(6):
    t = rng.randint(40000, 60000)
    referer = f"https://dashboard.partner.example/settings/api?api_key={KEYS['partner-acme']}&tab=keys"
    emit(t, "192.0.2.45", "GET", "/docs/quickstart", 200, 5120, referer, UA["browser"], 0.004, None)

# Someone tries random keys from one address.
for i in range(40):
    emit(8040 + i * 2, "198.51.100.23", "GET", "/v1/customers/1", 401, 61, "-", "python-requests/2.31", 0.001, key())

# Keyless traffic: health checks, docs, the normal 401 challenge.
for i in range(288):
    emit(i * 300, "10.0.0.5", "GET", "/healthz", 200, 2, "-", "kube-probe/1.30", 0.001, None)
for _ in range(120):
    emit(rng.randint(0, 86399), f"192.0.2.{rng.randint(1, 40)}", "GET", rng.choice(["/docs", "/docs/auth", "/"]), 200,
         rng.randint(2000, 12000), "https://www.example.org/", UA["browser"], rt(-4.0), None)
for _ in range(25):
    emit(rng.randint(0, 86399), f"198.51.100.{rng.randint(150, 200)}", "GET", "/v1/invoices", 401, 61, "-",
         "curl/7.88.1", 0.001, None)

# What scanners send: TLS to a plain-HTTP port, an empty request.
emit(33333, "192.0.2.250", None, "\x16\x03\x01\x00\xec\x01\x00\x00\xe8\x03\x03", 400, 157, "-", "-", 0.0, None)
emit(33334, "192.0.2.250", None, "", 400, 0, "-", "-", 0.0, None)

lines.sort(key=lambda x: x[0])
out = [l for _, l in lines]
# A line cut short by a full disk, mid-file.
out.insert(len(out) // 2, out[len(out) // 2][:57])
sys.stdout.write("\n".join(out) + "\n")
