"""The text of a user's BCC program as ebpftoolkit compiles it (probes/custom/bcc_source.py), no BCC needed:
ring buffer calls wrapped (and nothing in comments or strings), the header and its ``#line 1``, the types
and histograms found, and BCC's and the verifier's line numbers taken back to the user's lines."""
from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ebpftoolkit.probes.custom.bcc_source import (diagnostics, histogram_names, perf_output_names, program_text,
                                                  rewritten_lines, ringbuf_names, submitted, user_line, user_types,
                                                  verifier_failure, wrap_ringbuf_calls)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: the generators' own checks: the first example found is enough (shrinking it costs seconds)
FIRST = settings(database=None, max_examples=5000, phases=[Phase.generate], deadline=None)
DATA = Path(__file__).parent / "data"

RINGS = ["events", "ev", "rb", "out2", "e_1"]
PERFS = ["perf_ev", "pe", "events_p"]
KINDS = ["ringbuf_output", "ringbuf_reserve"]


def wrapped(call: str, kind: str, slot: int) -> str:
    """What a counted call must become: the call untouched inside, a failure (output or submit != 0, reserve
    == NULL) counted in slot ``slot``, the call's own value the expression's, no newline added."""
    if kind in ("ringbuf_output", "perf_submit"):
        return f"({{ int __ebt_r = {call}; if (__ebt_r) ebt_user_lost_bump({slot}); __ebt_r; }})"
    return f"({{ void *__ebt_p = {call}; if (!__ebt_p) ebt_user_lost_bump({slot}); __ebt_p; }})"


# -- source made of pieces: (the text, what wrapping must make of it) --------------------------------------

SAFE_ARGS = ["&e", "sizeof(e)", "0", "BPF_RB_FORCE_WAKEUP", "f(g(1), (2))", "e->n * 2", "sizeof(*e)"]
CODE_ARGS = SAFE_ARGS + ['")("', "')'", "'('", '"a\\")"', "/* ) */ 8", "x // ) not the end\n"]
SPACE = st.sampled_from(["", " ", "\n", "\t "])


@st.composite
def calls(draw, rings, perfs, args=CODE_ARGS):
    """``R . ringbuf_xxx ( args )`` (a ring) or ``P . perf_submit ( args )`` (a perf array) text, with any
    spacing, args holding parentheses in strings and comments."""
    name = draw(st.sampled_from(rings + perfs))
    kind = draw(st.sampled_from(KINDS)) if name in rings else "perf_submit"
    a = ", ".join(draw(st.lists(st.sampled_from(args), min_size=1, max_size=4)))
    return name, kind, f"{name}{draw(SPACE)}.{draw(SPACE)}{kind}{draw(SPACE)}({a})"


PLAIN = ["int x = 1;", "{", "}", "if (x) {", "return 0;", "a = b / c;", "u64 *p = &x;", "*p = 2;",
         "struct ev *e = NULL;", "#include <linux/sched.h>", "x = y ? 1 : 2;"]
CHARS = ["'\"'", "'\\''", "'('", "')'", "'/'", "'*'"]


@st.composite
def pieces(draw, rings, perfs):
    """(text, what wrapping must make of it, the perf array it submits to for real or None): a counted call,
    or something that must be left as it is (code, a call in a comment or a string, calls that are not a
    declared ring's or perf array's, a ring's perf_submit, a perf array's ringbuf_output, character literals)."""
    kind = draw(st.sampled_from(["call", "call", "plain", "block", "line", "string", "char", "decoy", "tricky"]))
    if kind == "call":
        name, k, text = draw(calls(rings, perfs))
        return text, wrapped(text, k, (rings + perfs).index(name)), name if k == "perf_submit" else None
    if kind == "plain":
        text = draw(st.sampled_from(PLAIN))
    elif kind == "block":
        text = f"/* {draw(calls(rings, perfs, SAFE_ARGS))[2]} */"
    elif kind == "line":
        text = f"// {draw(calls(rings, perfs, SAFE_ARGS))[2].replace(chr(10), ' ')}\n"
    elif kind == "string":
        text = f'"{draw(calls(rings, perfs, SAFE_ARGS))[2].replace(chr(10), " ")}"'
    elif kind == "char":
        text = draw(st.sampled_from(CHARS))
    elif kind == "decoy":                    # not a declared map's call: another map, a longer name, other methods
        r = draw(st.sampled_from(rings + perfs))
        text = draw(st.sampled_from(["other.ringbuf_output(&e, 8, 0)", "other.perf_submit(ctx, &e, 8)",
                                     f"my{r}.ringbuf_output(&e, 8, 0)", f"{r}2.ringbuf_reserve(8)",
                                     f"{r}.ringbuf_submit(e, 0)", f"{r}.ringbuf_discard(e, 0)",
                                     f"{r}_x.perf_submit(ctx, &e, 8)", f"{r}.ringbuf_outputs(&e)",
                                     f"{r}.perf_read(ctx)", f"{r}.perf_submit_skb(ctx, 8, &e, 8)"]
                                    + ([f"{r}.perf_submit(ctx, &e, 8)"] if r in rings else
                                       [f"{r}.ringbuf_output(&e, 8, 0)", f"{r}.ringbuf_reserve(8)"])))
    else:                                    # a comment opener in a string, a quote in a comment
        text = draw(st.sampled_from(['"/*"', '"*/"', '"//"', "/* \" */", "/* ' */", "// \"\n", '"\\\\"',
                                     "/**/", "/* // */"]))
    return text, text, None


@st.composite
def sources(draw):
    """(rings, perf arrays, source, what wrapping must make of it, the perf arrays really submitted to)."""
    rings = draw(st.lists(st.sampled_from(RINGS), max_size=3, unique=True))
    perfs = draw(st.lists(st.sampled_from(PERFS), min_size=0 if rings else 1, max_size=2, unique=True))
    parts = draw(st.lists(pieces(rings, perfs), max_size=14))
    seps = draw(st.lists(st.sampled_from([" ", "\n", ";\n", "\t"]), min_size=len(parts), max_size=len(parts)))
    src = "".join(t + s for (t, _, _), s in zip(parts, seps))
    want = "".join(w + s for (_, w, _), s in zip(parts, seps))
    return rings, perfs, src, want, {p for _, _, p in parts if p}


@FAST
@given(sources())
def test_every_ring_call_is_counted_and_nothing_else_changes(case):
    rings, perfs, src, want, _ = case
    out = wrap_ringbuf_calls(src, rings, perfs)
    assert out == want
    assert out.count("\n") == src.count("\n")              # the user's line numbers stay the user's


@FAST
@given(sources())
def test_a_source_with_no_real_call_is_left_as_it_is(case):
    rings, perfs, src, want, used = case
    if src == want:
        assert wrap_ringbuf_calls(src, rings, perfs) == src
    assert wrap_ringbuf_calls(src, []) == src                 # nothing declared: nothing to count
    for p in perfs:                                           # submitted(): a real call, not one in a comment
        assert submitted(src, p) == (p in used)


def test_the_generator_makes_the_tricky_sources_it_promises():
    from hypothesis import find
    find(sources(), lambda c: c[2] != c[3] and "/*" in c[2] and '"' in c[2] and c[2].count("(") > 4,
         settings=FIRST)
    find(sources(), lambda c: c[2] == c[3] and "ringbuf_output(" in c[2] and "perf_submit(" in c[2],  # must stay
         settings=FIRST)
    find(sources(), lambda c: re.search(r"ringbuf_\w+\s*\n\s*\(", c[3]) is not None and c[2] != c[3],
         settings=FIRST)
    find(sources(), lambda c: len(c[0]) == 2 and len(c[1]) == 2 and c[4], settings=FIRST)


@SLOW
@given(sources(), st.booleans(), st.integers(1, 1 << 20))
def test_program_text_is_the_header_then_the_user_s_lines_from_line_1(case, tree, track_max):
    rings, perfs, body, want, _ = case
    decoys = ("// BPF_RINGBUF_OUTPUT(ghost, 8);\nchar *s = \"BPF_RINGBUF_OUTPUT(ghost2, 8)\";\n"
              "/* BPF_PERF_OUTPUT(ghost3); */\n")
    decl = "".join(f"BPF_RINGBUF_OUTPUT({r}, 8);\n" for r in rings) + "".join(f"BPF_PERF_OUTPUT({p});\n" for p in perfs)
    src = decoys + decl + body
    text, counted = program_text(src, "mine", "mine.bpf.c", "/sys/fs/bpf/ebt/x", tree, track_max)
    assert ringbuf_names(src) == rings and perf_output_names(src) == perfs
    assert counted == rings + perfs
    head, marker, user = text.partition('#line 1 "mine.bpf.c"\n')
    assert marker and head.endswith("\n")                 # the directive is a line of its own...
    assert user == decoys + decl + want                     # ...and the next line is the user's line 1
    assert head.count('#line') == 0
    assert f"BPF_PERCPU_ARRAY(ebt_user_lost, u64, {len(rings) + len(perfs)});" in head  # a loss slot each
    assert f"#define EBT_SCOPE_TREE {int(tree)}\n" in head
    assert '"/sys/fs/bpf/ebt/x/ebt_state"' in head
    assert f'ebt_tracked, {track_max}, "/sys/fs/bpf/ebt/x/ebt_tracked"' in head


def _preprocess(text: str, defines: dict[str, str]) -> str:
    """Enough of cpp for the header: #define of a number, #if NAME / #else / #endif."""
    out, stack = [], []
    for line in text.splitlines():
        m = re.match(r"#define (\w+) (\d+)$", line)
        if m:
            defines[m.group(1)] = m.group(2)
        if line.startswith("#if "):
            stack.append(defines.get(line[4:].strip(), "0") != "0")
        elif line.startswith("#else"):
            stack[-1] = not stack[-1]
        elif line.startswith("#endif"):
            stack.pop()
        elif all(stack):
            out.append(line)
    assert not stack
    return "\n".join(out)


def test_the_header_gives_events_traced_and_the_scope_switch():
    user = "int x;\n"
    for tree in (True, False):
        text, rings = program_text(user, "p", "p.bpf.c", "/pins", tree, 77)
        assert rings == []
        assert "BPF_PERCPU_ARRAY(ebt_user_lost, u64, 1);" in text           # never a map of 0 entries
        seen = _preprocess(text, {})
        assert "#define EBPF_TRACED() ebpf_traced()" in seen
        assert "#define EBPF_RECORDING() ebpf_recording()" in seen
        traced = seen[seen.index("int ebpf_traced(void)"):]
        traced = traced[:traced.index("}")]
        if tree:        # the process tree: recording, and the caller is one of the session's processes
            assert 'BPF_TABLE_PINNED("hash", u32, u8, ebt_tracked, 77, "/pins/ebt_tracked");' in seen
            assert "ebpf_recording() && ebt_tracked.lookup(&tgid) != NULL" in traced
        else:           # the whole machine: recording is all it takes, and no tracked-process map at all
            assert "ebt_tracked" not in seen
            assert "return ebpf_recording();" in traced
        assert seen.endswith('#line 1 "p.bpf.c"\nint x;')
    a = program_text(user, "p", "p.bpf.c", "/pins", True, 77)[0]
    b = program_text(user, "p", "p.bpf.c", "/pins", False, 77)[0]
    diff = [(x, y) for x, y in zip(a.splitlines(), b.splitlines()) if x != y]
    assert diff == [("#define EBT_SCOPE_TREE 1", "#define EBT_SCOPE_TREE 0")]


def test_program_text_names_the_file_and_anchors_the_user_s_types():
    src = "struct ev { u32 pid; };\ntypedef struct { u64 a; } pair_t;\nBPF_RINGBUF_OUTPUT(rb, 8);\n" \
          "int f(void *c) { struct ev e = {}; rb.ringbuf_output(&e, sizeof(e), 0); return 0; }"
    text, rings = program_text(src, "mine", "mine.bpf.c", "/p", True, 8)
    user = text.split('#line 1 "mine.bpf.c"\n', 1)[1]
    lines = user.splitlines()
    assert lines[:3] == src.splitlines()[:3]
    assert lines[3] == ("int f(void *c) { struct ev e = {}; ({ int __ebt_r = rb.ringbuf_output(&e, sizeof(e), 0); "
                        "if (__ebt_r) ebt_user_lost_bump(0); __ebt_r; }); return 0; }")
    anchor = user[len(wrap_ringbuf_calls(src, rings)):]
    assert "struct ebt_btf_anchor { struct ev t0; pair_t t1; };" in anchor
    assert "BPF_ARRAY(ebt_btf_anchor, struct ebt_btf_anchor, 1);" in anchor
    assert anchor.startswith("\n")                     # on a line after the user's last, even without a newline
    text, _ = program_text("int x;\n", "mine", "mine.bpf.c", "/p", True, 8)
    assert "ebt_btf_anchor" not in text               # no types: no anchor


def test_ring_slots_follow_the_declarations():
    src = ("BPF_RINGBUF_OUTPUT(b, 8);\n/* BPF_RINGBUF_OUTPUT(z, 8); */\nBPF_RINGBUF_OUTPUT( a , 16);\n"
           "BPF_RINGBUF_OUTPUT(b, 8);\nvoid f() { a.ringbuf_reserve(8); b.ringbuf_output(&x, 8, 0); }\n")
    text, rings = program_text(src, "p", "p.bpf.c", "/p", False, 1)
    assert rings == ["b", "a"]
    assert "BPF_PERCPU_ARRAY(ebt_user_lost, u64, 2);" in text
    assert "({ void *__ebt_p = a.ringbuf_reserve(8); if (!__ebt_p) ebt_user_lost_bump(1); __ebt_p; })" in text
    assert "({ int __ebt_r = b.ringbuf_output(&x, 8, 0); if (__ebt_r) ebt_user_lost_bump(0); __ebt_r; })" in text


def test_an_unclosed_call_is_left_alone():
    src = "void f() { rb.ringbuf_output(&e, 8, 0; }\n"
    assert wrap_ringbuf_calls(src, ["rb"]) == src


# -- types and histograms --------------------------------------------------------------------------------

def test_user_types_finds_structs_unions_and_typedefs_outside_comments_and_strings():
    src = """
struct ev { u32 pid; char comm[16]; };
/* struct ghost { int a; }; */
// union ghost2 { int a; };
char *s = "struct ghost3 { int a; }";
union val
{
    u64 n;
    struct inner { u32 lo, hi; } parts;
    struct { u8 b[8]; } raw;
};
typedef struct { u64 a; struct { int x; } nest; } pair_t;
typedef union tagged_u { int i; float f; } tagged_t;
typedef struct ev ev_alias;
struct fwd;
int f(struct ev *e) { struct ev copy = {0}; return sizeof(struct ev) + (struct ev){ .pid = 1 }.pid; }
struct ev another_use_of_ev = { .pid = 2 };
"""
    assert user_types(src) == ["struct ev", "union val", "struct inner", "union tagged_u", "pair_t", "tagged_t"]
    assert user_types("int x;") == [] and user_types("") == []


@st.composite
def type_sources(draw):
    """(source, expected types): definitions in any order, each maybe hidden in a comment or a string."""
    n = draw(st.integers(0, 6))
    tagged, typedefs, text = [], [], []
    for i in range(n):
        form = draw(st.sampled_from(["tagged", "typedef", "typedef_tag", "nested"]))
        kw = draw(st.sampled_from(["struct", "union"]))
        sp = draw(st.sampled_from([" ", "\n", "  \n  ", ""]))
        hide = draw(st.sampled_from([None, None, "block", "line", "string"]))
        body = draw(st.sampled_from(["int a;", "u64 n; char c[4];", "struct { int x; } in;", "int a; /* } */"]))
        if form == "tagged":
            t, found = f"{kw} t{i}{sp}{{ {body} }};", ([f"{kw} t{i}"], [])
        elif form == "typedef":
            t, found = f"typedef {kw}{sp}{{ {body} }} td{i}_t;", ([], [f"td{i}_t"])
        elif form == "typedef_tag":
            t, found = f"typedef {kw} g{i}{sp}{{ {body} }} tg{i}_t;", ([f"{kw} g{i}"], [f"tg{i}_t"])
        else:
            t, found = f"{kw} o{i} {{ struct n{i} {{ int x; }} in; {body} }};", ([f"{kw} o{i}", f"struct n{i}"], [])
        if hide == "block":
            t, found = f"/* {t.replace('*/', '')} */", ([], [])
        elif hide == "line":
            t, found = f"// {t.replace(chr(10), ' ')}", ([], [])
        elif hide == "string":
            t, found = '"' + t.replace("\n", " ") + '"', ([], [])
        tagged += found[0]
        typedefs += found[1]
        text.append(t)
        text.append(draw(st.sampled_from(["\n", "\nint use(struct t0 *p) { return 0; }\n", "\n\n"])))
    return "".join(text), tagged + typedefs


@FAST
@given(type_sources())
def test_user_types_are_the_tagged_types_in_order_then_the_typedef_names(case):
    src, want = case
    assert user_types(src) == want


def test_histogram_names():
    src = """BPF_HISTOGRAM(dist);
BPF_HISTOGRAM( lat , int, 64);
// BPF_HISTOGRAM(ghost);
/* BPF_HISTOGRAM(ghost2); */
char *s = "BPF_HISTOGRAM(ghost3)";
BPF_HISTOGRAM
  (sizes, u32, 128);
BPF_HISTOGRAM(dist);
MY_BPF_HISTOGRAM(nope);
BPF_HASH(counts, u32, u64);
"""
    assert histogram_names(src) == ["dist", "lat", "sizes"]
    assert histogram_names("") == []


# -- BCC's rewritten lines back to the user's --------------------------------------------------------------

@st.composite
def rewrites(draw):
    """(the user's lines, BCC's rewritten lines, where each rewritten line came from: a user index or None)."""
    n = draw(st.integers(1, 25))
    user = []
    for i in range(n):
        user.append(draw(st.sampled_from(["", "    ", f"    u32 v{i} = {i};", f"int f{i}(void *ctx) {{",
                                           f"  x{i}++; // {i}", f"}} /* {i} */"])))
    rewritten, origin = [], []
    for i, line in enumerate(user):
        for _ in range(draw(st.integers(0, 2))):         # what BCC inserts: tracepoint structs, helpers
            rewritten.append(draw(st.sampled_from(["struct tracepoint__syscalls__sys_enter_read {",
                                                   "  u64 __do_not_use__;", "};", "", "#include <bcc/helpers.h>"])))
            origin.append(None)
        rewritten.append(draw(st.sampled_from(["", "  ", "\t"])) + line.strip())  # re-indented
        origin.append(i)
    return user, rewritten, origin


@FAST
@given(rewrites())
def test_user_line_takes_every_rewritten_line_back_to_the_user_s(case):
    user, rewritten, origin = case
    for at, came_from in enumerate(origin):
        got = user_line(rewritten, at + 1, user)
        if came_from is None:
            continue
        if user[came_from].strip():
            assert got == came_from + 1
        else:
            assert got is None                       # a blank line says nothing
    assert user_line(rewritten, 0, user) is None
    assert user_line(rewritten, len(rewritten) + 1, user) is None


def test_user_line_finds_a_rewritten_map_call_by_its_likeness():
    user = ["BPF_HASH(start, u64, struct val_t);", "int f(void *ctx) {",
            "    u64 pid_tgid = bpf_get_current_pid_tgid();", "    struct val_t *val = start.lookup(&pid_tgid);", "    return val->n;", "}"]
    rewritten = ["struct tracepoint__x { u64 a; };", "", user[0], user[1], user[2],
                 "    struct val_t *val = bpf_map_lookup_elem((void *)bpf_pseudo_fd(1, -4), &pid_tgid);", user[4],
                 user[5]]
    assert user_line(rewritten, 6, user) == 4
    assert user_line(rewritten, 7, user) == 5
    assert user_line(rewritten, 1, user) is None             # BCC's own line: like none of the user's
    assert user_line(["}", "}"], 2, ["}", "int a;", "}"]) == 1   # the last same line at or before it...
    assert user_line(["x", "x", "x", "}"], 4, ["}", "a;", "}", "b;", "}"]) == 3   # ...not the first
    assert user_line(["a;"], 1, []) is None


def test_rewritten_lines_are_the_user_s_part_of_bcc_s_debug_output():
    log = ('clang -cc1 ...\n#include <uapi/linux/ptrace.h>\n/* header */\n  #line 1 "p.bpf.c"  \n'
           "int a;\nint b;\n#include <bcc/footer.h>\nmore\n")
    assert rewritten_lines(log, "p.bpf.c") == ["int a;", "int b;"]
    assert rewritten_lines('#line 1 "p.bpf.c"\nint a;', "p.bpf.c") == ["int a;"]
    assert rewritten_lines('#line 1 "q.bpf.c"\nint a;', "p.bpf.c") == []


# -- the verifier's log ---------------------------------------------------------------------------------

VERIFIER_LOG = """bpf: Failed to load program: Permission denied
func#0 @0
0: R1=ctx() R10=fp0
; int kprobe__do_sys_open(struct pt_regs *ctx) { @ bad.bpf.c:2
0: (b7) r1 = 1                        ; R1_w=1
; u32 k = 1; @ bad.bpf.c:3
1: (63) *(u32 *)(r10 -4) = r1         ; R1_w=1 R10=fp0 fp-8=mmmm????
; u64 *v = bpf_map_lookup_elem((void *)bpf_pseudo_fd(1, -3), &k); @ bad.bpf.c:4
2: (18) r1 = 0xffff888100a3c000       ; R1_w=map_ptr(map=counts,ks=4,vs=8)
4: (bf) r2 = r10                      ; R2_w=fp0 R10=fp0
5: (07) r2 += -4                      ; R2_w=fp-4
6: (85) call bpf_map_lookup_elem#1    ; R0_w=map_value_or_null(id=1,map=counts,ks=4,vs=8)
; return *v; @ bad.bpf.c:5
7: (79) r0 = *(u64 *)(r0 +0)
R0 invalid mem access 'map_value_or_null'
processed 7 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0

HINT: The invalid mem access 'map_value_or_null' error can happen if you try to dereference memory without \
first using bpf_probe_read_kernel() to copy it to the BPF stack.
Traceback (most recent call last):
"""


def test_verifier_failure_finds_the_last_user_line_and_the_message():
    line, msg = verifier_failure(VERIFIER_LOG, "bad.bpf.c")
    assert line == 5
    assert msg.startswith("R0 invalid mem access 'map_value_or_null' HINT: The invalid mem access")
    assert "Traceback" not in msg and "processed" not in msg


def test_verifier_failure_of_the_recorded_kernel_log():
    log = (DATA / "verifier_reject.log").read_text()
    assert verifier_failure(log, "main.c") == (23, "variable ctx access var_off=(0x0; 0xffffffff) disallowed")
    assert verifier_failure(log, "other.c") == (None, "variable ctx access var_off=(0x0; 0xffffffff) disallowed")


def test_verifier_failure_skips_other_files_and_stops_at_the_program_s_start():
    log = ("func#0 @0\n; int x = 1; @ bad.bpf.c:7\n0: (b7) r1 = 1\n"
           "; static inline int helper() { @ /virtual/include/bcc/helpers.h:120\n"
           "; line zero @ bad.bpf.c:0\n1: (85) call bpf_thing#99\nunknown func bpf_thing#99\n"
           "processed 2 insns (limit 1000000)\n")
    assert verifier_failure(log, "bad.bpf.c") == (7, "unknown func bpf_thing#99")
    log = ("; int x = 1; @ bad.bpf.c:7\nfunc#1 @5\n0: (b7) r1 = 1\n1: (95) exit\nR0 !read_ok\n"
           "processed 2 insns (limit 1000000)\n")
    assert verifier_failure(log, "bad.bpf.c") == (None, "R0 !read_ok")     # line 7 is another function's


def test_verifier_failure_without_a_message_or_a_log():
    assert verifier_failure("", "p.bpf.c") is None
    assert verifier_failure("error: use of undeclared identifier 'x'\n1 error generated.", "p.bpf.c") is None
    log = "; a; @ p.bpf.c:3\n0: (95) exit\nprocessed 1 insns (limit 1000000)\n"
    assert verifier_failure(log, "p.bpf.c") == (3, "processed 1 insns (limit 1000000)")


@st.composite
def verifier_logs(draw):
    """(log, line of the last annotation of the user's file before the error, the error's lines)."""
    out, last, pc = ["bpf: Failed to load program: Permission denied", "func#0 @0", "0: R1=ctx() R10=fp0"], None, 0
    for _ in range(draw(st.integers(0, 12))):
        what = draw(st.sampled_from(["user", "other", "insn", "insn"]))
        if what == "user":
            n = draw(st.integers(1, 500))
            out.append(f"; {draw(st.sampled_from(['x++;', 'return *v;', 'u32 k = 1;']))} @ p.bpf.c:{n}")
            last = n
        elif what == "other":
            out.append(f"; static int helper(void) {{ @ /virtual/include/bcc/helpers.h:{draw(st.integers(1, 900))}")
        else:
            out.append(f"{pc}: (b7) r{draw(st.integers(0, 9))} = {draw(st.integers(0, 99))}   ; R1_w=1")
            pc += 1
    out.append(f"{pc}: (79) r0 = *(u64 *)(r0 +0)")
    message = draw(st.lists(st.sampled_from(["R0 invalid mem access 'scalar'", "R1 type=ctx expected=fp",
                                             "math between map_value pointer and register with unbounded min value"
                                             " is not allowed", "last_idx 5 first_idx 0"]), min_size=1, max_size=3))
    out += message + [f"processed {pc + 1} insns (limit 1000000) max_states_per_insn 0 total_states 0", ""]
    hints = draw(st.lists(st.just("HINT: a hint from BCC"), max_size=1))
    out += hints + ["Traceback (most recent call last):"]
    return "\n".join(out), last, " ".join(message + hints)


@FAST
@given(verifier_logs())
def test_verifier_failure_of_any_log(case):
    log, line, message = case
    assert verifier_failure(log, "p.bpf.c") == (line, message)


def test_diagnostics_keeps_clang_s_blocks_only():
    log = ("clang -cc1 -triple bpf ...\n#line 1 \"p.bpf.c\"\nint a\n"
           "p.bpf.c:3:5: error: use of undeclared identifier 'x'\n    x = 1;\n    ^\n"
           "#include <bcc/footer.h>\n"
           "p.bpf.c:4:1: warning: unused variable 'y' [-Wunused-variable]\n    int y;\n"
           "2 errors generated.\nTraceback (most recent call last):\n")
    assert diagnostics(log).splitlines() == [
        "p.bpf.c:3:5: error: use of undeclared identifier 'x'", "    x = 1;", "    ^",
        "p.bpf.c:4:1: warning: unused variable 'y' [-Wunused-variable]", "    int y;", "2 errors generated."]


def test_perf_arrays_found_and_their_submits_counted():
    src = ("BPF_PERF_OUTPUT(events);\nBPF_RINGBUF_OUTPUT(rb, 8);\n// BPF_PERF_OUTPUT(ghost);\n"
           "BPF_PERF_OUTPUT( out );\nBPF_PERF_OUTPUT(events);\n"
           "int f(void *ctx) { out.perf_submit(ctx, &e, sizeof(e)); /* events.perf_submit(ctx, &e, 8) */ return 0; }\n")
    assert perf_output_names(src) == ["events", "out"]
    assert submitted(src, "out") and not submitted(src, "events") and not submitted(src, "ghost")
    text, counted = program_text(src, "p", "p.bpf.c", "/p", True, 1)
    assert counted == ["rb", "events", "out"]                  # rings first, then perf arrays: the slots
    assert "BPF_PERCPU_ARRAY(ebt_user_lost, u64, 3);" in text
    assert ("({ int __ebt_r = out.perf_submit(ctx, &e, sizeof(e)); if (__ebt_r) ebt_user_lost_bump(2); "
            "__ebt_r; })") in text
    assert "/* events.perf_submit(ctx, &e, 8) */" in text
