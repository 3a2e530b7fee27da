// What the runtime reads out of WGSL source before compiling it:
//
// 1. Includes. WGSL has no modules: a line `//#include NAME` is replaced by the lines of the
//    package's fragment NAME (shaders/NAME.wgsl; fragment names start with `_` and are never
//    compiled alone), so kernels in different files share one copy of a struct, its bindings and
//    helpers. Fragments may include others; a cycle or an unknown name is an error with file and line.
// 2. Variants. WGSL has no generics, and a kernel that reads 16 bytes at a time needs its arrays
//    typed vec4<f32> where its scalar twin has f32. A block between `//#each` and `//#end` is
//    written once and emitted once per variant, each `$NAME` replaced by that variant's value
//    (as ggml's WebGPU backend declares its variants at the top of a shader):
//
//        //#each S=; T=f32 | S=4; T=vec4<f32>
//        fn load$S(i: u32) -> $T { return In$S[i]; }
//        //#end
//
//    `|` separates variants, `;` separates a variant's assignments (so values cannot contain
//    either). Every `$NAME` inside a block must be assigned by every variant of that block. The
//    expansion is fixed per file: specialisation per call stays with `override` constants.
// 3. The uniform parameters of each entry point. Each kernel's `Params` struct sits at
//    @binding(0); the host passes a named object, packed by the struct's layout (scalars and
//    vectors of 32-bit types, laid out by WGSL's uniform alignment rules), so no positional,
//    zero-padded arrays and no binding that changes meaning between entry points.

export interface ExpandedShader {
  code: string;
  /** lineMap[i] is the 1-based source line of generated line i + 1, in file fileMap[i]. */
  lineMap: number[];
  /** fileMap[i]: the file (shader or fragment name, no extension) generated line i + 1 comes from. */
  fileMap: string[];
}

/** Looks up a fragment's source by name (undefined: no such fragment). */
export type IncludeResolver = (name: string) => string | undefined;

interface SourceLine {
  text: string;
  file: string;
  line: number;
}

const IDENT = /\$([A-Za-z_][A-Za-z0-9_]*)/g;
const INCLUDE = /^\s*\/\/#include\s+(\S+)\s*$/;

/** The lines of `source` with every `//#include` replaced, each line tagged with where it came from. */
function includeLines(source: string, file: string, resolve: IncludeResolver | undefined, stack: string[]): SourceLine[] {
  const out: SourceLine[] = [];
  source.split('\n').forEach((text, i) => {
    const m = INCLUDE.exec(text);
    if (!m) {
      out.push({ text, file, line: i + 1 });
      return;
    }
    const name = m[1];
    if (!name.startsWith('_')) throw new Error(`${file}.wgsl:${i + 1}: '//#include ${name}': fragment names start with '_'`);
    const fragment = resolve?.(name);
    if (fragment === undefined) throw new Error(`${file}.wgsl:${i + 1}: '//#include ${name}': no such fragment`);
    if (stack.includes(name)) throw new Error(`${file}.wgsl:${i + 1}: '//#include ${name}' includes itself (${[...stack, name].join(' → ')})`);
    out.push(...includeLines(fragment, name, resolve, [...stack, name]));
  });
  return out;
}

/**
 * Expands `//#include` lines (through `resolve`), then `//#each … //#end` blocks; throws with the
 * file and line on a malformed block or a bad include.
 */
export function expandShader(source: string, file = 'shader', resolve?: IncludeResolver): ExpandedShader {
  const lines = includeLines(source, file, resolve, [file]);
  const out: string[] = [];
  const lineMap: number[] = [];
  const fileMap: string[] = [];
  const emit = (text: string, from: SourceLine) => {
    out.push(text);
    lineMap.push(from.line);
    fileMap.push(from.file);
  };
  const at = (l: SourceLine) => `${l.file}.wgsl:${l.line}`;
  for (let i = 0; i < lines.length; i++) {
    const head = /^\s*\/\/#each\s+(.*)$/.exec(lines[i].text);
    if (!head) {
      if (/^\s*\/\/#end\b/.test(lines[i].text)) throw new Error(`${at(lines[i])}: '//#end' without '//#each'`);
      emit(lines[i].text, lines[i]);
      continue;
    }
    const variants = parseVariants(head[1], at(lines[i]));
    const start = i + 1;
    let end = start;
    while (end < lines.length && !/^\s*\/\/#end\b/.test(lines[end].text)) {
      if (/^\s*\/\/#each\b/.test(lines[end].text)) throw new Error(`${at(lines[end])}: '//#each' blocks do not nest`);
      end++;
    }
    if (end === lines.length) throw new Error(`${at(lines[i])}: '//#each' without '//#end'`);
    for (const v of variants) {
      for (let j = start; j < end; j++) {
        emit(
          lines[j].text.replace(IDENT, (_, name: string) => {
            if (!(name in v)) throw new Error(`${at(lines[j])}: '$${name}' is not assigned by every variant of the '//#each' at ${at(lines[i])}`);
            return v[name];
          }),
          lines[j],
        );
      }
    }
    i = end;
  }
  return { code: out.join('\n'), lineMap, fileMap };
}

function parseVariants(spec: string, where: string): Record<string, string>[] {
  const variants = spec.split('|').map((part) => {
    const v: Record<string, string> = {};
    for (const assign of part.split(';')) {
      if (assign.trim() === '') continue;
      const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$/.exec(assign);
      if (!m) throw new Error(`${where}: '${assign.trim()}' is not NAME=value`);
      v[m[1]] = m[2].trim();
    }
    return v;
  });
  const names = Object.keys(variants[0]).sort().join(',');
  if (variants.some((v) => Object.keys(v).sort().join(',') !== names)) {
    throw new Error(`${where}: every variant of an '//#each' must assign the same names (${names})`);
  }
  return variants;
}

// ------------------------------------------------------------------ uniform parameters

export type ScalarType = 'u32' | 'i32' | 'f32';

export interface ParamField {
  name: string;
  type: ScalarType;
  /** 1 for a scalar, 2–4 for a vector. */
  count: number;
  /** Offset in 4-byte words. */
  offset: number;
}

export interface ParamLayout {
  struct: string;
  fields: ParamField[];
  /** Size in 4-byte words, rounded up to 16 bytes as a uniform binding wants. */
  words: number;
}

/** The layouts of every struct made of 32-bit scalars and vectors in `code`. */
export function paramStructs(code: string): Map<string, ParamLayout> {
  const out = new Map<string, ParamLayout>();
  const clean = stripComments(code);
  for (const m of clean.matchAll(/\bstruct\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{([^}]*)\}/g)) {
    const fields: ParamField[] = [];
    let offset = 0;
    let ok = true;
    for (const part of m[2].split(',')) {
      const f = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.+?)\s*$/.exec(part);
      if (!f) {
        if (part.trim() !== '') ok = false;
        continue;
      }
      const t = /^(?:(u32|i32|f32)|vec([234])\s*<\s*(u32|i32|f32)\s*>)$/.exec(f[2]);
      if (!t) {
        ok = false;
        break;
      }
      const count = t[1] ? 1 : Number(t[2]);
      const type = (t[1] ?? t[3]) as ScalarType;
      const align = count === 1 ? 1 : count === 2 ? 2 : 4;
      offset = Math.ceil(offset / align) * align;
      fields.push({ name: f[1], type, count, offset });
      offset += count;
    }
    if (ok && fields.length > 0) out.set(m[1], { struct: m[1], fields, words: Math.max(4, Math.ceil(offset / 4) * 4) });
  }
  return out;
}

/**
 * The struct of the uniform at @binding(0) that `entry` uses, or null when it uses none. The
 * entry's body and every function it calls are searched for the uniform variables' names.
 */
export function entryParams(code: string, entry: string): string | null {
  const clean = stripComments(code);
  const uniforms = new Map<string, string>();
  for (const m of clean.matchAll(/@binding\(\s*0\s*\)\s*var\s*<\s*uniform\s*>\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([A-Za-z_][A-Za-z0-9_]*)/g)) {
    uniforms.set(m[1], m[2]);
  }
  if (uniforms.size === 0) return null;
  const bodies = functionBodies(clean);
  if (!bodies.has(entry)) throw new Error(`no function '${entry}'`);
  const seen = new Set<string>();
  const used = new Set<string>();
  const visit = (fn: string) => {
    if (seen.has(fn)) return;
    seen.add(fn);
    for (const id of bodies.get(fn)!.match(/[A-Za-z_][A-Za-z0-9_]*/g) ?? []) {
      if (uniforms.has(id)) used.add(uniforms.get(id)!);
      else if (bodies.has(id)) visit(id);
    }
  };
  visit(entry);
  if (used.size > 1) throw new Error(`entry point '${entry}' uses more than one uniform struct (${[...used].join(', ')})`);
  return used.size === 1 ? [...used][0] : null;
}

function stripComments(code: string): string {
  return code.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/\/\/[^\n]*/g, '');
}

function functionBodies(code: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /\bfn\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(code))) {
    let i = code.indexOf('{', m.index);
    if (i < 0) break;
    let depth = 0;
    for (; i < code.length; i++) {
      if (code[i] === '{') depth++;
      else if (code[i] === '}' && --depth === 0) break;
    }
    out.set(m[1], code.slice(m.index, i + 1));
    re.lastIndex = i;
  }
  return out;
}

export type ParamValues = Record<string, number | readonly number[]>;

const F32_MAX = 3.4028234663852886e38;

/**
 * Packs named values by `layout`; every field must be given, and nothing else. A u32 must be an
 * integer in [0, 2³²), an i32 one in [−2³¹, 2³¹), an f32 a number that f32 can hold (a finite
 * value past ±3.4e38 would silently become ±Inf).
 */
export function packParams(layout: ParamLayout, values: ParamValues, where: string): Uint32Array {
  const words = new Uint32Array(layout.words);
  const f = new Float32Array(words.buffer);
  const s = new Int32Array(words.buffer);
  const known = new Set(layout.fields.map((x) => x.name));
  for (const k of Object.keys(values)) {
    if (!known.has(k)) throw new Error(`${where}: '${k}' is not a field of ${layout.struct} (${[...known].join(', ')})`);
  }
  for (const field of layout.fields) {
    const v = values[field.name];
    if (v === undefined) throw new Error(`${where}: ${layout.struct}.${field.name} is missing`);
    const list = typeof v === 'number' ? [v] : v;
    if (list.length !== field.count) {
      throw new Error(
        `${where}: ${layout.struct}.${field.name} needs ${field.count === 1 ? 'a number' : `${field.count} numbers`}, got ${JSON.stringify(v)}`,
      );
    }
    list.forEach((x, i) => {
      const at = field.offset + i;
      const bad = (want: string) => new Error(`${where}: ${layout.struct}.${field.name} = ${x} is not ${want}`);
      if (typeof x !== 'number') throw bad('a number');
      if (field.type === 'u32') {
        if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw bad('a u32');
        words[at] = x;
      } else if (field.type === 'i32') {
        if (!Number.isInteger(x) || x < -0x80000000 || x > 0x7fffffff) throw bad('an i32');
        s[at] = x;
      } else {
        if (Number.isFinite(x) && Math.abs(x) > F32_MAX) throw bad('representable in f32');
        f[at] = x;
      }
    });
  }
  return words;
}
