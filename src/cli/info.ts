import type { CommandModule } from 'yargs';
import { autoOrder, initBackend, probeBackends } from '../backends/index.js';

export const infoCommand: CommandModule<object, { 'dawn-backend'?: string }> = {
  command: 'info',
  describe: 'List the backends, whether each is available here, and which one `auto` picks',
  builder: (y) => y.option('dawn-backend', { choices: ['vulkan', 'opengles', 'default'], describe: 'Dawn backend for WebGPU in Node (env DAWN_BACKEND)' }) as never,
  handler: async (a) => {
    const opts = { quiet: true, dawnBackend: a['dawn-backend'] as 'vulkan' | 'opengles' | 'default' | undefined };
    const rows = await probeBackends(opts);
    console.log('backend    available  note');
    for (const r of rows) console.log(`${r.name.padEnd(10)} ${(r.available ? 'yes' : 'no').padEnd(10)} ${r.note}`);
    const chosen = await initBackend('auto', opts);
    console.log(`\nauto order: ${autoOrder().join(' → ')}\nauto picks: ${chosen.name} (${chosen.reason})`);
  },
};
