# report.awk — perf/run's aggregator: reads the --tsv files of bench_codec,
# bench_runtime and bench_dist and writes one Markdown table per section to
# stdout (median, min–max, each peer's median and libotp's ratio to it, the
# targets of DESIGN.md met or missed) and an SVG chart of the ratios to
# the file named by -v svg=PATH. POSIX awk (Debian's mawk is enough).
#
# Input lines, tab-separated:
#   S section row impl round value   one sample (the first impl seen in a
#                                    section is libotp, the others peers)
#   R section row unit better        better: lo (times, bytes) or hi (rates)
#   T section row peer need text     target: ratio to peer >= need, or with
#                                    peer "=", libotp's median <=N or >=N
BEGIN {
    FS = "\t"
    title["codec"] = "ETF codec: ns per pass over the mix (libotp vs Erlang term_to_binary/binary_to_term vs erl_interface)"
    title["runtime"] = "One node: processes and GenServer calls"
    title["dist"] = "Two nodes on loopback, each side talking to its own kind"
    title["dist_client"] = "Two nodes: a client calling an Erlang node's gen_server"
    title["dist_server"] = "Two nodes: an Erlang client calling each kind of server"
    title["io"] = "I/O backends: libotp's two-node scenarios on io_uring vs epoll"
}

function add_sec(s) {
    if (!(s in seen_sec)) {
        seen_sec[s] = 1
        secs[++nsec] = s
        nrow[s] = 0
        nimpl[s] = 0
    }
}

function add_row(s, r) {
    add_sec(s)
    if (!((s, r) in seen_row)) {
        seen_row[s, r] = 1
        rows[s, ++nrow[s]] = r
    }
}

$1 == "R" { add_row($2, $3); unit[$2, $3] = $4; better[$2, $3] = $5 }
$1 == "S" {
    add_row($2, $3)
    if (!(($2, $4) in seen_impl)) {
        seen_impl[$2, $4] = 1
        impls[$2, ++nimpl[$2]] = $4
    }
    k = $2 SUBSEP $3 SUBSEP $4
    vals[k] = (k in vals) ? vals[k] " " $6 : $6
}
$1 == "T" { add_row($2, $3); tn = ++ntgt[$2, $3]; tpeer[$2, $3, tn] = $4; tneed[$2, $3, tn] = $5; ttext[$2, $3, tn] = $6 }

# Median of the space-separated numbers in str; sets g_lo and g_hi.
function stats(str,    a, n, i, j, t) {
    n = split(str, a, " ")
    for (i = 1; i <= n; i++) a[i] += 0
    for (i = 2; i <= n; i++) {
        t = a[i]
        for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    g_lo = a[1]; g_hi = a[n]
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}

function num(v) {
    if (v >= 100) return sprintf("%.0f", v)
    if (v >= 10) return sprintf("%.1f", v)
    return sprintf("%.2f", v)
}

# Sets g_div and g_sfx: the scale and suffix that make v in unit u readable.
function scale(v, u) {
    g_div = 1
    if (u == "ns" || u == "ns/call") {
        g_sfx = " ns"
        if (v >= 1e6) { g_div = 1e6; g_sfx = " ms" }
        else if (v >= 1e3) { g_div = 1e3; g_sfx = " µs" }
        return
    }
    if (u == "B") { g_sfx = " B"; return }
    g_sfx = (u == "/s") ? "/s" : " " u
    if (v >= 1e12) { g_div = 1e12; g_sfx = " T" g_sfx }
    else if (v >= 1e9) { g_div = 1e9; g_sfx = " G" g_sfx }
    else if (v >= 1e6) { g_div = 1e6; g_sfx = " M" g_sfx }
    else if (v >= 1e3) { g_div = 1e3; g_sfx = " k" g_sfx }
}

function fmt(v, u) { scale(v, u); return num(v / g_div) g_sfx }

# "median unit (min–max)", min and max in the median's scale.
function fmt3(m, lo, hi, u) {
    scale(m, u)
    return num(m / g_div) g_sfx " (" num(lo / g_div) "–" num(hi / g_div) ")"
}

function have(s, r, i) { return (s SUBSEP r SUBSEP impls[s, i]) in vals }

# libotp's advantage over peer i (> 1: libotp better), or -1.
function ratio(s, r, i,    m0, m1) {
    if (!have(s, r, 1) || !have(s, r, i)) return -1
    m0 = stats(vals[s, r, impls[s, 1]]); m1 = stats(vals[s, r, impls[s, i]])
    if (m0 <= 0 || m1 <= 0) return -1
    return better[s, r] == "hi" ? m0 / m1 : m1 / m0
}

function peer_index(s, p,    i) {
    for (i = 2; i <= nimpl[s]; i++) if (impls[s, i] == p) return i
    return 0
}

# "met"/"missed" text for row r's targets; sets g_missed.
function targets(s, r,    t, out, p, need, x, ok, txt) {
    out = ""
    g_missed = 0
    for (t = 1; t <= ntgt[s, r]; t++) {
        p = tpeer[s, r, t]; need = tneed[s, r, t]
        if (p == "=") {
            if (!have(s, r, 1)) { txt = "n/a"; ok = -1 }
            else {
                x = stats(vals[s, r, impls[s, 1]])
                ok = substr(need, 1, 2) == "<=" ? x <= substr(need, 3) + 0 : x >= substr(need, 3) + 0
                txt = fmt(x, unit[s, r])
            }
        } else {
            x = peer_index(s, p) ? ratio(s, r, peer_index(s, p)) : -1
            if (x < 0) { txt = "n/a"; ok = -1 } else { txt = sprintf("%.2fx", x); ok = x >= need }
        }
        if (ok == 0) g_missed++
        out = out (out == "" ? "" : "; ") (ok < 0 ? "n/a" : ok ? "met" : "**MISSED**") " (" ttext[s, r, t] ": " txt ")"
    }
    return out == "" ? "—" : out
}

END {
    for (si = 1; si <= nsec; si++) {
        s = secs[si]
        printf "### %s\n\n", (s in title) ? title[s] : s
        printf "| scenario | %s (median, min–max) |", impls[s, 1]
        for (i = 2; i <= nimpl[s]; i++) printf " %s | ratio |", impls[s, i]
        printf " target |\n| --- | ---: |"
        for (i = 2; i <= nimpl[s]; i++) printf " ---: | ---: |"
        printf " --- |\n"
        for (ri = 1; ri <= nrow[s]; ri++) {
            r = rows[s, ri]; u = unit[s, r]
            printf "| %s |", r
            if (have(s, r, 1)) {
                m = stats(vals[s, r, impls[s, 1]])
                printf " %s |", fmt3(m, g_lo, g_hi, u)
            } else printf " — |"
            for (i = 2; i <= nimpl[s]; i++) {
                if (!have(s, r, i)) { printf " — | — |"; continue }
                m = stats(vals[s, r, impls[s, i]])
                x = ratio(s, r, i)
                printf " %s | %s |", fmt3(m, g_lo, g_hi, u), x < 0 ? "—" : sprintf("%.2fx", x)
            }
            tt = targets(s, r)
            printf " %s |\n", tt
            if (g_missed) missed[++nmissed] = s ": " r
        }
        printf "\n"
    }
    printf "Ratios are libotp's advantage over the peer in that column: its time or bytes over libotp's, or libotp's rate over its (above 1x, libotp is better).\n"
    if (nmissed) {
        printf "\nTargets of DESIGN.md missed in this run:"
        for (i = 1; i <= nmissed; i++) printf("%s %s", (i > 1 ? ";" : ""), missed[i])
        printf ".\n"
    } else if (1) printf "\nEvery target of DESIGN.md that was measured is met in this run.\n"
    if (svg != "") chart()
}

# The chart: one horizontal bar per row and peer (the section's first peer,
# and any peer a target is stated against; not the latency percentiles),
# log scale, a line at 1x, the target as a tick on its bar.
function chart(    n, si, s, ri, r, i, t, x, lo, hi, W, L, H, y, px, p1, col, tg, lab, d, e, v) {
    n = 0
    for (si = 1; si <= nsec; si++) {
        s = secs[si]
        for (ri = 1; ri <= nrow[s]; ri++) {
            r = rows[s, ri]
            if (r ~ / p[0-9]/) continue # the percentiles are in the table
            for (i = 2; i <= nimpl[s]; i++) {
                tg = 0
                for (t = 1; t <= ntgt[s, r]; t++) if (tpeer[s, r, t] == impls[s, i]) tg = tneed[s, r, t]
                if (i != 2 && !tg) continue
                x = ratio(s, r, i)
                if (x <= 0) continue
                n++
                bsec[n] = s; blab[n] = s ": " r " vs " impls[s, i]; bx[n] = x; btg[n] = tg
            }
        }
    }
    lo = 0.1; hi = 10
    for (i = 1; i <= n; i++) {
        while (bx[i] < lo && lo > 1e-3) lo /= 10
        while (bx[i] > hi && hi < 1e4) hi *= 10
        while (btg[i] > hi && hi < 1e4) hi *= 10
    }
    L = 430; W = 460; H = 18
    d = log(hi) - log(lo)
    p1 = L + W * (0 - log(lo)) / d
    printf("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n", L + W + 70, n * H + 70) > svg
    printf("<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n") > svg
    printf("<text x=\"10\" y=\"16\" font-size=\"13\" font-weight=\"bold\">libotp vs each peer (log scale; right of 1x: libotp better; red tick: target of DESIGN.md)</text>\n") > svg
    for (e = lo; e <= hi * 1.001; e *= 10) {
        px = L + W * (log(e) - log(lo)) / d
        printf("<line x1=\"%.1f\" y1=\"28\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", px, px, n * H + 34) > svg
        printf("<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#555\">%sx</text>\n", px, n * H + 48, e >= 1 ? sprintf("%d", e + 0.5) : sprintf("%g", e)) > svg
    }
    for (i = 1; i <= n; i++) {
        y = 30 + (i - 1) * H
        px = L + W * (log(bx[i]) - log(lo)) / d
        col = bx[i] >= 1 ? "#4a90d9" : "#e8a33d"
        if (btg[i] && bx[i] < btg[i]) col = "#d9534f"
        lab = blab[i]
        gsub(/&/, "\\&amp;", lab); gsub(/</, "\\&lt;", lab); gsub(/>/, "\\&gt;", lab)
        printf("<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", L - 6, y + 12, lab) > svg
        printf("<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", px < p1 ? px : p1, y + 2, px < p1 ? p1 - px : px - p1, H - 4, col) > svg
        printf("<text x=\"%.1f\" y=\"%d\" fill=\"#333\">%.2fx</text>\n", (px > p1 ? px : p1) + 4, y + 12, bx[i]) > svg
        if (btg[i]) {
            v = L + W * (log(btg[i]) - log(lo)) / d
            printf("<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#c00\" stroke-width=\"3\"/>\n", v, y, v, y + H) > svg
        }
        if (i > 1 && bsec[i] != bsec[i - 1])
            printf("<line x1=\"10\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\" stroke-dasharray=\"3,3\"/>\n", y, L + W, y) > svg
    }
    printf("<line x1=\"%.1f\" y1=\"26\" x2=\"%.1f\" y2=\"%d\" stroke=\"black\" stroke-width=\"1.5\"/>\n", p1, p1, n * H + 34) > svg
    printf("</svg>\n") > svg
    close(svg)
}
