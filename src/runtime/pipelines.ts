// The pipeline cache: shader sources (the package's embedded ones and the caller's addShader) run
// through wgsl.ts once (variants expanded, uniform layouts read), one module per shader with the
// common prelude prepended, and compute pipelines compiled asynchronously and cached by
// (shader, entry point, override constants). Compilation errors are reported against the
// kernel's own file and line, not the prelude-prefixed, variant-expanded text the driver saw.

import { SHADERS } from '../generated/shaders.js';
import { PeftError } from '../validate.js';
import type { DeviceHealth } from './device.js';
import { expandShader, paramStructs, entryParams, type ParamLayout } from './wgsl.js';

const PRELUDE_NAME = 'common';
const PRELUDE = SHADERS[PRELUDE_NAME] ?? '';
const PRELUDE_LINES = PRELUDE.split('\n').length - 1;

export type Constants = Record<string, number | boolean>;

interface Source {
  code: string;
  lineMap: number[];
  fileMap: string[];
  structs: Map<string, ParamLayout>;
  entries: Map<string, ParamLayout | null>;
}

export class PipelineCache {
  #device: GPUDevice;
  #health: DeviceHealth;
  #extraShaders = new Map<string, string>();
  #sources = new Map<string, Source>();
  #modules = new Map<string, GPUShaderModule>();
  /** One getCompilationInfo per module: Chromium never settles a second call on the same module. */
  #compiled = new Map<GPUShaderModule, Promise<string | null>>();
  #pipelines = new Map<string, Promise<GPUComputePipeline> | GPUComputePipeline>();

  constructor(device: GPUDevice, health: DeviceHealth) {
    this.#device = device;
    this.#health = health;
  }

  addShader(name: string, code: string): void {
    if (name in SHADERS || this.#extraShaders.has(name)) throw new PeftError(`addShader: a shader named '${name}' already exists`);
    this.#extraShaders.set(name, code);
  }

  /** The shader's source with its `//#each` variants expanded, and its uniform layouts. */
  #source(shader: string): Source {
    let src = this.#sources.get(shader);
    if (src) return src;
    const raw = SHADERS[shader] ?? this.#extraShaders.get(shader);
    if (raw === undefined) {
      throw new PeftError(
        `unknown shader '${shader}': expected one of ${Object.keys(SHADERS)
          .filter((s) => s !== PRELUDE_NAME && !s.startsWith('_'))
          .join(', ')}`,
      );
    }
    let expanded;
    try {
      // Fragments (`//#include _name`) come from the package's shaders only.
      expanded = expandShader(raw, shader, (name) => SHADERS[name]);
    } catch (e) {
      throw new PeftError((e as Error).message);
    }
    src = { ...expanded, structs: paramStructs(expanded.code), entries: new Map() };
    this.#sources.set(shader, src);
    return src;
  }

  /** The uniform layout `entry` of `shader` reads at binding 0 (null: it has no uniform). */
  paramLayout(shader: string, entry: string): ParamLayout | null {
    const src = this.#source(shader);
    let layout = src.entries.get(entry);
    if (layout === undefined) {
      let struct: string | null;
      try {
        struct = entryParams(src.code, entry);
      } catch (e) {
        throw new PeftError(`${shader}.wgsl: ${(e as Error).message}`);
      }
      layout = struct === null ? null : (src.structs.get(struct) ?? null);
      if (struct !== null && layout === null)
        throw new PeftError(`${shader}.wgsl: uniform struct ${struct} of '${entry}' is not made of 32-bit scalars and vectors`);
      src.entries.set(entry, layout);
    }
    return layout;
  }

  #module(shader: string): GPUShaderModule {
    let mod = this.#modules.get(shader);
    if (mod) return mod;
    const source = this.#source(shader).code;
    // getCompilationInfo reports the errors with lines; the scope keeps them from also surfacing
    // as uncaptured errors at some later, unrelated sync.
    this.#device.pushErrorScope('validation');
    mod = this.#device.createShaderModule({ code: withPrelude(source), label: `${shader}.wgsl` });
    void this.#device.popErrorScope();
    this.#modules.set(shader, mod);
    return mod;
  }

  #compilationError(shader: string, mod: GPUShaderModule): Promise<string | null> {
    let checked = this.#compiled.get(mod);
    if (!checked) {
      checked = this.#readCompilationInfo(shader, mod);
      this.#compiled.set(mod, checked);
    }
    return checked;
  }

  async #readCompilationInfo(shader: string, mod: GPUShaderModule): Promise<string | null> {
    const info = await mod.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length === 0) return null;
    return errors
      .map((m) => {
        const inPrelude = m.lineNum <= PRELUDE_LINES;
        const src = this.#source(shader);
        const i = m.lineNum - PRELUDE_LINES - 1;
        const where = inPrelude ? `${PRELUDE_NAME}.wgsl:${m.lineNum}` : `${src.fileMap[i] ?? shader}.wgsl:${src.lineMap[i] ?? i + 1}`;
        return `${where}:${m.linePos}: ${m.message}`;
      })
      .join('\n');
  }

  /**
   * The compute pipeline for a shader entry point specialised with override constants; cached by
   * (shader, entry, constants). Compilation errors throw with the shader's file and line.
   */
  async pipeline(shader: string, entry = 'main', constants: Constants = {}): Promise<GPUComputePipeline> {
    const key = pipelineKey(shader, entry, constants);
    const hit = this.#pipelines.get(key);
    if (hit) return hit;
    const p = this.#build(shader, entry, constants);
    this.#pipelines.set(key, p);
    try {
      const built = await p;
      this.#pipelines.set(key, built);
      return built;
    } catch (e) {
      this.#pipelines.delete(key);
      throw e;
    }
  }

  async #build(shader: string, entry: string, constants: Constants): Promise<GPUComputePipeline> {
    this.#health.assertAlive(`compile ${shader}.wgsl`);
    const mod = this.#module(shader);
    const compileError = await this.#compilationError(shader, mod);
    if (compileError) throw new PeftError(`WGSL compilation failed in ${shader}.wgsl:\n${compileError}`);
    const numeric: Record<string, number> = {};
    for (const [k, v] of Object.entries(constants)) numeric[k] = typeof v === 'boolean' ? (v ? 1 : 0) : v;
    try {
      // createComputePipelineAsync rejects on error; nothing to capture here.
      return await this.#device.createComputePipelineAsync({
        layout: 'auto',
        compute: { module: mod, entryPoint: entry, constants: numeric },
        label: `${shader}.${entry}${JSON.stringify(constants)}`,
      });
    } catch (e) {
      throw new PeftError(`pipeline ${shader}.wgsl:${entry} with constants ${JSON.stringify(constants)} failed: ${(e as Error).message}`);
    }
  }

  /** The pipeline if already built (dispatch needs it synchronously); see `prepare`. */
  ready(shader: string, entry: string, constants: Constants): GPUComputePipeline {
    const hit = this.#pipelines.get(pipelineKey(shader, entry, constants));
    if (hit && !(hit instanceof Promise)) return hit;
    throw new PeftError(
      `pipeline ${shader}.wgsl:${entry} ${JSON.stringify(constants)} is not compiled yet: await the kernel's prepare step (or ctx.pipeline) before encoding`,
    );
  }
}

/**
 * The module text: the prelude, then the shader. WGSL wants directives (`enable subgroups;`) before
 * any declaration, so a shader's leading directive lines are moved onto the prelude's first line
 * and blanked where they were: every line keeps its number, and error lines still map back.
 */
function withPrelude(source: string): string {
  const lines = source.split('\n');
  const directives: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (/^(enable|requires|diagnostic)\b[^;]*;$/.test(line)) {
      directives.push(line);
      lines[i] = '';
    } else if (line !== '' && !line.startsWith('//')) break;
  }
  if (directives.length === 0) return `${PRELUDE}${source}`;
  return `${directives.join(' ')} ${PRELUDE}${lines.join('\n')}`;
}

function pipelineKey(shader: string, entry: string, constants: Constants): string {
  const sorted = Object.keys(constants)
    .sort()
    .map((k) => `${k}=${constants[k]}`)
    .join(',');
  return `${shader}:${entry}:${sorted}`;
}
