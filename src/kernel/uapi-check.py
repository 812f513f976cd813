#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Generate a compile-time ABI check of our ublk UAPI header.

Usage: uapi-check.py SYSTEM_HEADER OUR_HEADER RENAMED_OUT C_OUT

SYSTEM_HEADER is an installed <linux/ublk_cmd.h>.  It defines the same
identifiers as src/kernel/uapi/ublk_cmd.h, so both cannot be included in one
translation unit.  We therefore write RENAMED_OUT, a copy of the system header
whose own identifiers (macros, struct tags, functions, include guard) are
moved into a private namespace:

    UBLK*  -> SYSUBLK*        ublksrv_* -> sys_ublksrv_*      ublk_* -> sys_ublk_*

and C_OUT, which includes both headers and holds one _Static_assert per fact:

  * every object-like macro of the system header: ours exists, has the same
    value and exactly the same type;
  * every struct of the system header: same sizeof, and for every member
    (members of anonymous unions/structs included) same offsetof and size.
    Structs in EXTENSIBLE_STRUCTS grow at the end from one kernel to the
    next; for those an older system header (whose member list is a prefix
    of ours) only needs to be no larger than ours.

Compiling C_OUT fails on any drift.  Nothing is printed on success.

Upstream has renamed or split a few fields over time while keeping the
layout; RENAMED_MEMBERS says how an old member maps onto ours.  Anything else
that the system header has and ours lacks is an error, on purpose.
"""

import os
import re
import sys

# (struct, old member) -> (first, last) member of ours spanning the same
# bytes; used only for a system header that lacks the new members.
RENAMED_MEMBERS = {
        # 6.1: __u64 data[2]; since 6.5 (unprivileged devices) data[1] +
        # dev_path_len, pad, reserved
        ('ublksrv_ctrl_cmd', 'data'): ('data', 'reserved'),
        # up to 6.12 at least: __u16 pad0; 7.x: io_desc_size
        ('ublksrv_ctrl_dev_info', 'pad0'): ('io_desc_size', 'io_desc_size'),
        # 6.1: __u64 reserved0; since 6.5: owner_uid + owner_gid
        ('ublksrv_ctrl_dev_info', 'reserved0'): ('owner_uid', 'owner_gid'),
}

# structs versioned by a length field, which may only grow at their end
EXTENSIBLE_STRUCTS = {'ublk_params'}

IDENT = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')


class Error(Exception):
        pass


def strip_comments(text):
        """Blank out comments, keeping newlines so line numbers stay right."""
        out = []
        i = 0
        n = len(text)
        while i < n:
                if text.startswith('/*', i):
                        j = text.find('*/', i + 2)
                        if j < 0:
                                raise Error('unterminated comment')
                        out.append(re.sub(r'[^\n]', ' ', text[i:j + 2]))
                        i = j + 2
                elif text.startswith('//', i):
                        j = text.find('\n', i)
                        j = n if j < 0 else j
                        out.append(' ' * (j - i))
                        i = j
                elif text[i] in '"\'':
                        q = text[i]
                        j = i + 1
                        while j < n and text[j] != q:
                                j += 2 if text[j] == '\\' else 1
                        out.append(text[i:j + 1])
                        i = j + 1
                else:
                        out.append(text[i])
                        i += 1
        return ''.join(out)


def join_continuations(text):
        return re.sub(r'\\\n', ' ', text)


def parse_directives(code):
        """Return (guard, object-like macros in order, function-like macros)."""
        guard = None
        objects = []
        functions = []
        for line in code.splitlines():
                m = re.match(r'\s*#\s*(\w+)\s*(.*)$', line)
                if not m:
                        continue
                directive, rest = m.group(1), m.group(2).strip()
                if directive == 'ifndef' and guard is None:
                        guard = rest
                if directive != 'define':
                        continue
                m = re.match(r'([A-Za-z_]\w*)(\(?)\s*(.*)$', rest)
                if not m:
                        raise Error('cannot parse #define ' + rest)
                name, paren, value = m.group(1), m.group(2), m.group(3).strip()
                if name == guard:
                        continue
                if paren:
                        functions.append(name)
                elif value:
                        objects.append(name)
        if guard is None:
                raise Error('no include guard found')
        return guard, objects, functions


def tokenize(code):
        """Tokens of the non-preprocessor part: identifiers, numbers, punctuation."""
        body = '\n'.join('' if re.match(r'\s*#', line) else line
                         for line in code.splitlines())
        return re.findall(r'[A-Za-z_]\w*|\d\w*|->|\S', body)


def split_top(tokens, sep):
        """Split a token list at sep, ignoring separators nested in () [] {}."""
        parts, cur, depth = [], [], 0
        for t in tokens:
                if t in '([{':
                        depth += 1
                elif t in ')]}':
                        depth -= 1
                if t == sep and depth == 0:
                        parts.append(cur)
                        cur = []
                else:
                        cur.append(t)
        if cur:
                parts.append(cur)
        return parts


def matching(tokens, i):
        """Index of the brace closing the one at tokens[i]."""
        depth = 0
        for j in range(i, len(tokens)):
                if tokens[j] == '{':
                        depth += 1
                elif tokens[j] == '}':
                        depth -= 1
                        if depth == 0:
                                return j
        raise Error('unbalanced braces')


def parse_members(tokens, struct, prefix=''):
        """Member designators (dotted for named nested aggregates) of a body."""
        members = []
        for decl in split_top(tokens, ';'):
                if not decl:
                        continue
                if decl[0] in ('struct', 'union') and '{' in decl:
                        o = decl.index('{')
                        c = matching(decl, o)
                        inner = decl[o + 1:c]
                        names = [t for t in decl[c + 1:] if IDENT.fullmatch(t)]
                        if not names:
                                # anonymous: its members belong to us
                                members += parse_members(inner, struct, prefix)
                        for name in names:
                                members.append(prefix + name)
                                members += parse_members(inner, struct,
                                                         prefix + name + '.')
                        continue
                for d in split_top(decl, ','):
                        if ':' in d:
                                raise Error('%s: bit-fields are not supported'
                                            % struct)
                        if '(' in d:
                                raise Error('%s: function pointer members are '
                                            'not supported' % struct)
                        if '[' in d:
                                d = d[:d.index('[')]
                        if not d or not IDENT.fullmatch(d[-1]):
                                raise Error('%s: cannot parse member %r'
                                            % (struct, ' '.join(d)))
                        members.append(prefix + d[-1])
        return members


def parse_structs(code):
        """[(tag, [member designators])] for every struct defined at top level."""
        tokens = tokenize(code)
        structs = []
        i = 0
        while i < len(tokens):
                t = tokens[i]
                if t == '{':
                        # function bodies and initializers: skip whole
                        i = matching(tokens, i) + 1
                        continue
                if (t == 'struct' and i + 2 < len(tokens)
                                and IDENT.fullmatch(tokens[i + 1])
                                and tokens[i + 2] == '{'):
                        c = matching(tokens, i + 2)
                        tag = tokens[i + 1]
                        structs.append((tag, parse_members(tokens[i + 3:c], tag)))
                        i = c + 1
                        continue
                if t in ('union', 'enum', 'typedef') and '{' in tokens[i:i + 3]:
                        raise Error('top-level %s definitions are not supported'
                                    ' yet; extend %s' % (t, sys.argv[0]))
                i += 1
        return structs


def parse_functions(code):
        """Names of functions defined (with a body) in the header."""
        names = []
        tokens = tokenize(code)
        for i, t in enumerate(tokens):
                if t == '{' and i > 0 and tokens[i - 1] == ')':
                        depth = 0
                        for j in range(i - 1, -1, -1):
                                if tokens[j] == ')':
                                        depth += 1
                                elif tokens[j] == '(':
                                        depth -= 1
                                        if depth == 0:
                                                names.append(tokens[j - 1])
                                                break
        return names


def private_name(name):
        if name.startswith('UBLK'):
                return 'SYS' + name
        if name.startswith(('ublksrv_', 'ublk_')):
                return 'sys_' + name
        return 'UBLKD_SYS_' + name


def rename(text, names):
        """Rename whole-word occurrences of names, outside comments/strings."""
        pattern = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\])*"|'
                             r'\b(?:%s)\b' % '|'.join(map(re.escape, names)),
                             re.S)

        def sub(m):
                s = m.group(0)
                if s.startswith(('/', '"')):
                        return s
                return private_name(s)

        return pattern.sub(sub, text)


def generate(sys_path, our_path, renamed_out, c_out):
        with open(our_path, encoding='utf-8') as f:
                our_structs = dict(parse_structs(
                        join_continuations(strip_comments(f.read()))))
        with open(sys_path, encoding='utf-8') as f:
                text = f.read()
        code = join_continuations(strip_comments(text))
        guard, objects, func_macros = parse_directives(code)
        structs = parse_structs(code)
        functions = parse_functions(code)
        if not objects or not structs:
                raise Error('found no macros or no structs; not a ublk header?')

        # Everything the header itself declares, plus any UBLK* identifier
        # it uses, moves into the private namespace.  Struct members and
        # locals keep their names so designators stay the same on both sides.
        own = set(objects) | set(func_macros) | set(functions)
        own |= {tag for tag, _ in structs}
        own.add(guard)
        own |= {t for t in IDENT.findall(code) if t.startswith('UBLK')}
        renamed = rename(text, sorted(own, key=len, reverse=True))

        rel = os.path.basename(renamed_out)
        lines = [
                '/* Generated by src/kernel/uapi-check.py from %s. */' % sys_path,
                '/* Do not edit: compile errors here mean our UAPI drifted. */',
                '#include <linux/errno.h>',
                '#include <linux/ioctl.h>',
                '#include <stddef.h>',
                '#include "%s"' % rel,
                '#include "ublk_cmd.h"',
                '',
                '#define UBLKD_SAME_TYPE(a, b) \\',
                '        __builtin_types_compatible_p(__typeof__(a), __typeof__(b))',
                '#define UBLKD_MEMBER_SIZE(type, m) sizeof(((type *)0)->m)',
                '',
        ]
        where = sys_path

        if func_macros:
                lines.append('/* function-like macros, not checked: %s */'
                             % ' '.join(func_macros))
                lines.append('')

        for name in objects:
                sysname = private_name(name)
                lines += [
                        '#ifndef %s' % name,
                        '#error "our ublk_cmd.h lacks %s, which %s defines"'
                        % (name, where),
                        '#endif',
                        '_Static_assert((unsigned long long)(%s) == '
                        '(unsigned long long)(%s),' % (name, sysname),
                        '               "%s differs from %s");' % (name, where),
                        '_Static_assert(UBLKD_SAME_TYPE(%s, %s),' % (name, sysname),
                        '               "%s has another type than in %s");'
                        % (name, where),
                ]
        lines.append('')

        for tag, members in structs:
                ours = 'struct ' + tag
                theirs = 'struct ' + private_name(tag)
                our_members = our_structs.get(tag)
                if our_members is None:
                        lines.append('#error "our ublk_cmd.h lacks %s, which %s '
                                     'defines"' % (ours, where))
                        continue
                if tag in EXTENSIBLE_STRUCTS and members != our_members:
                        if our_members[:len(members)] != members:
                                lines.append('#error "%s of %s is not a prefix '
                                             'of ours"' % (ours, where))
                        op = '>='
                else:
                        op = '=='
                lines += [
                        '_Static_assert(sizeof(%s) %s sizeof(%s),'
                        % (ours, op, theirs),
                        '               "sizeof(%s) differs from %s");'
                        % (ours, where),
                ]
                for m in members:
                        first, last = RENAMED_MEMBERS.get((tag, m), (m, m))
                        if ({first, last} - {m}) & set(members):
                                # the system header already has the new layout
                                first, last = m, m
                        label = '%s.%s' % (tag, m)
                        if (first, last) != (m, m):
                                label += ' (now %s..%s)' % (first, last)
                        lines += [
                                '_Static_assert(offsetof(%s, %s) == offsetof(%s, %s),'
                                % (ours, first, theirs, m),
                                '               "offset of %s differs from %s");'
                                % (label, where),
                                '_Static_assert(offsetof(%s, %s) + '
                                'UBLKD_MEMBER_SIZE(%s, %s) - offsetof(%s, %s) =='
                                % (ours, last, ours, last, ours, first),
                                '               UBLKD_MEMBER_SIZE(%s, %s),'
                                % (theirs, m),
                                '               "size of %s differs from %s");'
                                % (label, where),
                        ]
                lines.append('')

        write_file(renamed_out, renamed)
        write_file(c_out, '\n'.join(lines))


def write_file(path, content):
        tmp = path + '.tmp'
        with open(tmp, 'w', encoding='utf-8') as f:
                f.write(content)
        os.replace(tmp, path)


def main(argv):
        if len(argv) != 5:
                sys.stderr.write('usage: %s SYSTEM_HEADER OUR_HEADER '
                                 'RENAMED_OUT C_OUT\n' % argv[0])
                return 2
        try:
                generate(argv[1], argv[2], argv[3], argv[4])
        except (Error, OSError) as e:
                sys.stderr.write('%s: %s: %s\n' % (argv[0], argv[1], e))
                return 1
        return 0


if __name__ == '__main__':
        sys.exit(main(sys.argv))
