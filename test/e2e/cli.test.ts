/**
 * The `hpo` command line as a user runs it, in child processes against a real dev server:
 * hostile or broken input is rejected before anything is written, a whole study runs through
 * `hpo start`, `hpo status --json` lists its trials, and the Temporal API key appears nowhere.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import YAML from 'yaml';
import { makeFakeStudy, PYTHON } from '../helpers/fakeStudy';
import { assertStudyInvariants } from '../helpers/invariants';
import { startTestTemporal, type TestTemporal } from '../helpers/temporal';

const HPO = path.resolve(__dirname, '..', '..', 'bin', 'hpo.js');
const SECRET = 'sk-test-4f1d9c0b-never-log-me';

let temporal: TestTemporal;

before(async () => {
  temporal = await startTestTemporal('cli');
});

after(async () => {
  await temporal?.close();
});

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HPO, ...args], {
      cwd,
      env: {
        ...process.env,
        PATH: `${path.dirname(PYTHON)}${path.delimiter}${process.env.PATH}`,
        TEMPORAL_ADDRESS: temporal.address,
        TEMPORAL_PROFILE: '',
        HPO_HEARTBEAT_THROTTLE_MS: '500',
        HPO_POLL_INTERVAL_MS: '100',
        HPO_PROGRESS_INTERVAL_MS: '300',
        ...env,
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Lists every file below `dir`, relative to it. */
function listFiles(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort();
}

const hostile: Array<{ name: string; edit: (doc: any) => void; raw?: string; fragment: RegExp }> = [
  { name: 'study name escaping the artifact folder', edit: (d) => (d.optimization.study_name = '../../evil'), fragment: /optimization\.study_name/ },
  { name: 'command as one shell string', edit: (d) => (d.optimization.execution.command = 'python -m src.run --config {config}; rm -rf ~'), fragment: /optimization\.execution\.command.*never run through a shell/s },
  { name: 'huge trial budget', edit: (d) => (d.optimization.budget.n_trials = 1e12), fragment: /optimization\.budget\.n_trials/ },
  { name: 'YAML tag that builds an object', edit: () => undefined, raw: 'run_config: !!python/object:os.system ["echo owned"]\n', fragment: /tag/i },
  { name: 'empty file', edit: () => undefined, raw: '', fragment: /empty/i },
  { name: 'config that is not a mapping', edit: () => undefined, raw: '- a\n- b\n', fragment: /mapping/i },
];

for (const item of hostile) {
  test(`start rejects ${item.name}`, async () => {
    const study = makeFakeStudy({ studyName: 'hostile', nTrials: 1 });
    const document = YAML.parse(fs.readFileSync(study.configPath, 'utf8'));
    item.edit(document);
    fs.writeFileSync(study.configPath, item.raw ?? YAML.stringify(document));
    const before = listFiles(study.projectDir);

    const result = await runCli(['start', study.configPath], study.projectDir);

    // Invalid input exits 2 with a message naming what is wrong, before anything starts.
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, item.fragment);
    assert.deepEqual(listFiles(study.projectDir), before);
    assert.equal(fs.existsSync(path.join(study.projectDir, 'artifacts')), false);
    assert.equal(fs.existsSync(path.resolve(study.projectDir, '..', '..', 'evil')), false);
  });
}

test('start runs study and status lists it', async () => {
  const study = makeFakeStudy({ studyName: 'clistudy', nTrials: 3, parallel: 2, epochs: 3, finalFullPipeline: true });
  const document = YAML.parse(fs.readFileSync(study.configPath, 'utf8'));
  // The wrapper prints whether the pipeline can see the API key, then runs the fake pipeline.
  document.optimization.execution.command = [
    PYTHON,
    '-c',
    'import os, runpy, sys; print("API key visible to the pipeline:", "TEMPORAL_API_KEY" in os.environ, flush=True); ' +
      'sys.argv = ["run", "--config", sys.argv[1]]; runpy.run_module("src.run", run_name="__main__")',
    '{config}',
  ];
  fs.writeFileSync(study.configPath, YAML.stringify(document));
  const secretEnv = { TEMPORAL_API_KEY: SECRET, TEMPORAL_TLS: 'false' };

  const started = await runCli(['start', study.configPath, '--worker'], study.projectDir, secretEnv);
  assert.equal(started.code, 0, started.stderr);
  assert.match(started.stdout, /Study clistudy finished: 3 of 3 trials/);
  assert.match(started.stdout, /Best value \(val_auprc, maximize\)/);
  assert.match(started.stdout, /trials: +artifacts\/hpo\/clistudy\/trials\.csv/);
  assert.match(started.stdout, /best params: +artifacts\/hpo\/clistudy\/best_params\.yaml/);

  const status = await runCli(['status', 'clistudy', '--json'], study.projectDir, secretEnv);
  assert.equal(status.code, 0, status.stderr);
  const report = JSON.parse(status.stdout);
  assert.equal(report.trials.length, 3);
  for (const trial of report.trials) {
    assert.deepEqual(Object.keys(trial).sort(), ['attempts', 'epoch', 'number', 'params', 'reason', 'run_id', 'state', 'value']);
    assert.equal(trial.state, 'COMPLETE');
    assert.equal(trial.attempts, 1);
  }

  // The API key reaches no log, no artifact and no pipeline.
  const pipelineLogs = listFiles(study.spec.artifactDir).filter((f) => f.endsWith('.log'));
  assert.ok(pipelineLogs.length >= 3);
  assert.match(fs.readFileSync(path.join(study.spec.artifactDir, pipelineLogs.find((f) => f.includes('pipeline'))!), 'utf8'), /API key visible to the pipeline: False/);
  for (const file of [...listFiles(study.projectDir).map((f) => path.join(study.projectDir, f))]) {
    assert.ok(!fs.readFileSync(file).includes(SECRET), `${file} contains the API key`);
  }
  assert.ok(!started.stdout.includes(SECRET), 'the start command printed the API key');
  assert.ok(!started.stderr.includes(SECRET), 'the start command logged the API key');

  const result = JSON.parse(status.stdout);
  assert.equal(result.finished, 3);
  const stored = await (await temporal.client.workflow.getHandle('study-clistudy')).result();
  assertStudyInvariants(study, stored);
});
