/** WebGPU in Node: Dawn (the `webgpu` package) installed as `navigator.gpu`, so tfjs-backend-webgpu finds it. */

/** Dawn's backend: 'vulkan', 'opengles' (NVIDIA servers, Mesa) or Dawn's own default. */
export type DawnBackend = 'vulkan' | 'opengles' | 'default';

/** What the `webgpu` package exports. */
export interface DawnModule {
  create: (flags: string[]) => unknown;
  globals: object;
}

/**
 * Installs Dawn's GPU (the `webgpu` package, loaded by `load`) as `navigator.gpu`, with the first of `asked`
 * (else env DAWN_BACKEND, else Vulkan then OpenGL ES) that has an adapter, and returns a line describing it;
 * undefined when `navigator.gpu` already exists. Throws, with what to install, when none has an adapter.
 */
export async function installDawn(load: () => Promise<DawnModule>, asked?: DawnBackend): Promise<string | undefined> {
  const g = globalThis as unknown as { navigator?: { gpu?: unknown } };
  if (g.navigator?.gpu) return undefined;
  const dawn = await load();
  const wanted = asked ?? (process.env.DAWN_BACKEND as DawnBackend | undefined);
  // Vulkan first; containers often lack it, while OpenGL ES over EGL (NVIDIA's or Mesa's) works.
  const tries: DawnBackend[] = wanted ? [wanted] : ['vulkan', 'opengles'];
  const failures: string[] = [];
  for (const which of tries) {
    const gpu = dawn.create(which === 'default' ? [] : [`backend=${which}`]) as { requestAdapter(o?: object): Promise<unknown> };
    // Dawn's GLES backend only exposes a compatibility-mode adapter; ask for it so the request succeeds.
    const adapterOpts = which === 'opengles' ? { featureLevel: 'compatibility' } : {};
    const probe = (await gpu.requestAdapter(adapterOpts)) as { info?: { vendor?: string; description?: string }; limits?: { maxStorageBufferBindingSize?: number } } | null;
    if (!probe) { failures.push(`no ${which} adapter`); continue; }
    const realRequest = gpu.requestAdapter.bind(gpu);
    gpu.requestAdapter = (o?: object) => realRequest({ ...(o ?? {}), ...adapterOpts });
    Object.assign(globalThis, dawn.globals);
    Object.defineProperty(globalThis, 'navigator', { value: { ...(g.navigator ?? {}), gpu }, configurable: true, writable: true });
    return `Dawn ${which}: ${probe.info?.description || probe.info?.vendor || 'adapter'}, maxStorageBufferBindingSize ${probe.limits?.maxStorageBufferBindingSize}`;
  }
  throw new Error(`Dawn found no WebGPU adapter (${failures.join(', ')}); for OpenGL ES install libegl1 libgles2 (+ libegl-mesa0 on CPU machines) and set EGL_PLATFORM=surfaceless`);
}
