# JSONata, syntax only. The validator accepts JSONata-mode definitions (QueryLanguage
# "JSONata"), so it must tell a well-formed `{% expression %}` from a broken one; this module is
# a tokenizer plus a Pratt (top-down operator precedence) parser that builds no tree, it only
# walks the grammar and raises AslSyntaxError at the first error. Evaluating JSONata is out of
# scope: the interpreter refuses JSONata states.
#
# Binding powers follow the JSONata grammar: `.` 75, `[` `(` `@` `#` 80, `{` 70, `* / %` 60,
# `+ - &` 50, comparisons and `in` `~>` 40, `and` 30, `or` 25, `? ..` 20, `:=` 10.
from __future__ import annotations

import re

from ._errors import AslSyntaxError

EXPRESSION_RE = re.compile(r"\{% (.*) %\}")  # `.` stops at a newline, as AWS's check does

_OPERATORS = [
    "..",
    ":=",
    "!=",
    ">=",
    "<=",
    "**",
    "~>",
    "?:",
    "??",
    ".",
    "[",
    "]",
    "{",
    "}",
    "(",
    ")",
    ",",
    "@",
    "#",
    ";",
    ":",
    "?",
    "+",
    "-",
    "*",
    "/",
    "%",
    "|",
    "=",
    "<",
    ">",
    "^",
    "&",
    "!",
    "~",
]
_BP = {
    ".": 75,
    "[": 80,
    "]": 0,
    "{": 70,
    "}": 0,
    "(": 80,
    ")": 0,
    ",": 0,
    "@": 80,
    "#": 80,
    ";": 0,
    ":": 0,
    "?": 20,
    "+": 50,
    "-": 50,
    "*": 60,
    "/": 60,
    "%": 60,
    "|": 20,
    "=": 40,
    "<": 40,
    ">": 40,
    "^": 40,
    "**": 60,
    "..": 20,
    ":=": 10,
    "!=": 40,
    "<=": 40,
    ">=": 40,
    "~>": 40,
    "and": 30,
    "or": 25,
    "in": 40,
    "&": 50,
    "!": 0,
    "~": 0,
    "?:": 40,
    "??": 40,
}
_NUMBER = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?([Ee][-+]?[0-9]+)?")
_NAME_END = set(" \t\n\r") | set(".[]{}(),@#;:?+-*/%|=<>^&!~\"'`$")
_Tok = tuple[str, str]  # (kind: op|num|str|name|var|regex|end, text)


def check_jsonata(text: str) -> None:
    """Raise AslSyntaxError unless `text` (a `{% ... %}` string) is well-formed JSONata."""
    m = EXPRESSION_RE.fullmatch(text)
    if not m:
        raise AslSyntaxError(
            f'{text!r}: a JSONata expression is written "{{% expression %}}" on one line'
        )
    _Parser(_tokenize(m.group(1))).parse()


def _tokenize(src: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c.isspace():
            i += 1
            continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            if j < 0:
                raise AslSyntaxError("JSONata: unterminated comment")
            i = j + 2
            continue
        prefix_position = (
            not toks
            or (toks[-1][0] == "op" and toks[-1][1] not in (")", "]", "}"))
            or (toks[-1][0] == "name" and toks[-1][1] in ("and", "or", "in"))
        )
        if c == "/" and prefix_position:
            j = i + 1
            while j < n and src[j] != "/":
                j += 2 if src[j] == "\\" else 1
            if j >= n:
                raise AslSyntaxError("JSONata: unterminated regular expression")
            j += 1
            while j < n and src[j] in "gimsuy":
                j += 1
            toks.append(("regex", src[i:j]))
            i = j
            continue
        if c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            if j >= n:
                raise AslSyntaxError("JSONata: unterminated string")
            toks.append(("str", src[i : j + 1]))
            i = j + 1
            continue
        if c == "`":
            j = src.find("`", i + 1)
            if j < 0:
                raise AslSyntaxError("JSONata: unterminated `name`")
            toks.append(("name", src[i + 1 : j]))
            i = j + 1
            continue
        m = _NUMBER.match(src, i)
        if m and c.isdigit():
            toks.append(("num", m.group()))
            i = m.end()
            continue
        op = next((o for o in _OPERATORS if src.startswith(o, i)), None)
        if op is not None:
            toks.append(("op", op))
            i += len(op)
            continue
        if c == "$":
            j = i + 1
            while j < n and src[j] not in _NAME_END:
                j += 1
            if j == i + 1 and j < n and src[j] == "$":
                j += 1
            toks.append(("var", src[i:j]))
            i = j
            continue
        j = i
        while j < n and src[j] not in _NAME_END:
            j += 1
        if j == i:
            raise AslSyntaxError(f"JSONata: unexpected {c!r}")
        toks.append(("name", src[i:j]))
        i = j
    toks.append(("end", ""))
    return toks


class _Parser:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        if tok[0] != "end":
            self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok != ("op", text):
            got = tok[1] or "the end"
            raise AslSyntaxError(f"JSONata: expected {text!r}, got {got!r}")

    def parse(self) -> None:
        self.expression(0)
        if self.peek()[0] != "end":
            raise AslSyntaxError(f"JSONata: unexpected {self.peek()[1]!r}")

    def bp(self, tok: _Tok) -> int:
        if tok[0] == "op" or (tok[0] == "name" and tok[1] in ("and", "or", "in")):
            return _BP.get(tok[1], 0)
        return 0

    def expression(self, rbp: int) -> None:
        self.nud(self.take())
        while rbp < self.bp(self.peek()):
            self.led(self.take())

    def sequence(self, close: str, sep: str = ",", item: str = "expr") -> None:
        if self.peek() == ("op", close):
            self.take()
            return
        while True:
            if item == "pair":
                self.expression(0)
                self.expect(":")
            self.expression(0)
            tok = self.take()
            if tok == ("op", close):
                return
            if tok != ("op", sep):
                got = tok[1] or "the end"
                raise AslSyntaxError(f"JSONata: expected {sep!r} or {close!r}, got {got!r}")

    def nud(self, tok: _Tok) -> None:
        kind, text = tok
        if kind in ("num", "str", "regex", "var"):
            return
        if kind == "name":
            if text in ("function", "λ") and self.peek() == ("op", "("):
                self.take()
                self.sequence(")")
                if self.peek() == ("op", "<"):  # a signature: skip to the matching '>'
                    depth = 0
                    while True:
                        t = self.take()
                        if t[0] == "end":
                            raise AslSyntaxError("JSONata: unterminated function signature")
                        depth += {"<": 1, ">": -1}.get(t[1], 0) if t[0] == "op" else 0
                        if depth == 0:
                            break
                self.expect("{")
                self.expression(0)
                self.expect("}")
            return
        if kind == "end":
            raise AslSyntaxError("JSONata: unexpected end of expression")
        if text in ("-", "!"):
            self.expression(70)
        elif text in ("*", "**", "%"):
            return
        elif text == "(":
            self.sequence(")", ";")
        elif text == "[":
            self.sequence("]")
        elif text == "{":
            self.sequence("}", item="pair")
        elif text == "|":
            self.expression(0)
            self.expect("|")
            self.expression(0)
            if self.peek() == ("op", ","):
                self.take()
                self.expression(0)
            self.expect("|")
        else:
            raise AslSyntaxError(f"JSONata: {text!r} cannot start an expression")

    def led(self, tok: _Tok) -> None:
        text = tok[1]
        if text == "(":
            if self.peek() == ("op", ")"):
                self.take()
                return
            while True:
                if self.peek() == ("op", "?"):  # partial application placeholder
                    self.take()
                else:
                    self.expression(0)
                t = self.take()
                if t == ("op", ")"):
                    return
                if t != ("op", ","):
                    raise AslSyntaxError(f"JSONata: expected ',' or ')', got {t[1] or 'the end'!r}")
        elif text == "[":
            if self.peek() == ("op", "]"):
                self.take()
                return
            self.expression(0)
            self.expect("]")
        elif text == "{":
            self.sequence("}", item="pair")
        elif text == "?":
            self.expression(0)
            if self.peek() == ("op", ":"):
                self.take()
                self.expression(0)
        elif text == ":=":
            self.expression(_BP[":="] - 1)
        elif text in ("@", "#"):
            if self.take()[0] != "var":
                raise AslSyntaxError(f"JSONata: {text!r} must be followed by a $variable")
        elif text == "^":
            self.expect("(")
            while True:
                if self.peek() in (("op", "<"), ("op", ">")):
                    self.take()
                self.expression(0)
                t = self.take()
                if t == ("op", ")"):
                    return
                if t != ("op", ","):
                    raise AslSyntaxError("JSONata: bad sort term list")
        elif text in _BP and text not in (")", "]", "}", ",", ";", ":", "!", "~"):
            self.expression(_BP[text])
        else:
            raise AslSyntaxError(f"JSONata: unexpected {text!r}")
