// `npm run finetune [-- --model charlm|gpt] [flags]`: runs the fine-tuning example of the chosen
// model with the remaining flags. charlm (the default) is examples/charlm/finetune.ts, the
// character MLP on Pokémon names; gpt is examples/gpt/finetune.ts, the pretrained GPT on
// superhero names. `--help` after the model prints that script's flags.

export {};

const MODELS = { charlm: './charlm/finetune.js', gpt: './gpt/finetune.js' } as const;

const argv = process.argv;
const i = argv.indexOf('--model');
const model = i >= 0 ? argv[i + 1] : 'charlm';
if (!(model in MODELS)) {
  console.error(`--model must be one of ${Object.keys(MODELS).join(', ')}, got ${String(model)}`);
  process.exit(2);
}
// The example scripts read their own flags from process.argv.
if (i >= 0) argv.splice(i, 2);
await import(MODELS[model as keyof typeof MODELS]);
