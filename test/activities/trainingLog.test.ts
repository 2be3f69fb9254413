import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  bestValue,
  type EpochRow,
  ObjectiveColumnMissingError,
  parseCell,
  readTrainingLog,
  TrainingLogFormatError,
  TrainingLogTail,
} from '../../src/activities/trainingLog';

const FIXTURES = path.resolve(__dirname, '..', 'fixtures', 'relic');
const HEADER = 'Epoch,Epoch Time,Train Loss,Val Loss,Val auprc,Learning Rate';

let tmpRoot: string;
before(() => {
  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'training-log-'));
});
after(() => {
  fs.rmSync(tmpRoot, { recursive: true, force: true });
});

let fileCount = 0;
function newCsvPath(): string {
  fileCount += 1;
  return path.join(tmpRoot, `run${fileCount}`, 'training_step.csv');
}

function write(csvPath: string, text: string | Buffer): void {
  fs.mkdirSync(path.dirname(csvPath), { recursive: true });
  fs.writeFileSync(csvPath, text);
}

function append(csvPath: string, text: string): void {
  fs.appendFileSync(csvPath, text);
}

function row(epoch: number, auprc: string): string {
  return `${epoch},10.0,0.5,0.4,${auprc},0.0001\n`;
}

const epochsOf = (rows: EpochRow[]) => rows.map((r) => r.epoch);
const valuesOf = (rows: EpochRow[]) => rows.map((r) => r.value);

/** Max of `Val auprc` computed from the raw text, independently of csv-parse. */
function maxAuprcFromText(text: string): { max: number; rows: number } {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/).filter((line) => line !== '');
  const column = lines[0].split(',').indexOf('Val auprc');
  const values = lines.slice(1).map((line) => parseFloat(line.split(',')[column]));
  return { max: Math.max(...values), rows: values.length };
}

describe('TrainingLogTail', () => {
  test('poll before file exists', async () => {
    const csvPath = newCsvPath();
    const tail = new TrainingLogTail(csvPath, 'Val auprc');

    assert.deepEqual(await tail.poll(), []);
    assert.equal(tail.exists(), false);

    write(csvPath, HEADER + '\n' + row(1, '0.5'));
    assert.equal(tail.exists(), true);
    assert.deepEqual(epochsOf(await tail.poll()), [1]);
  });

  test('header only gives no rows', async () => {
    const csvPath = newCsvPath();
    write(csvPath, HEADER + '\n');

    assert.deepEqual(await new TrainingLogTail(csvPath, 'Val auprc').poll(), []);
  });

  test('appended rows arrive once', async () => {
    const csvPath = newCsvPath();
    const tail = new TrainingLogTail(csvPath, 'Val auprc');
    write(csvPath, HEADER + '\n' + row(1, '0.1'));

    assert.deepEqual(epochsOf(await tail.poll()), [1]);
    assert.deepEqual(await tail.poll(), []);

    append(csvPath, row(2, '0.2') + row(3, '0.3'));
    const rows = await tail.poll();
    assert.deepEqual(epochsOf(rows), [2, 3]);
    assert.deepEqual(valuesOf(rows), [0.2, 0.3]);
    assert.deepEqual(epochsOf(tail.rows()), [1, 2, 3]);
  });

  test('row keeps every metric', async () => {
    const csvPath = newCsvPath();
    write(csvPath, HEADER + '\n' + '1,705.5,0.7,0.6,0.71,1.3e-05\n');

    const [first] = await new TrainingLogTail(csvPath, 'Val auprc').poll();

    assert.deepEqual(first, {
      epoch: 1,
      value: 0.71,
      metrics: { 'Epoch Time': 705.5, 'Train Loss': 0.7, 'Val Loss': 0.6, 'Val auprc': 0.71, 'Learning Rate': 1.3e-5 },
    });
  });

  test('header matches case-insensitively', async () => {
    const csvPath = newCsvPath();
    write(csvPath, ' epoch , Epoch Time,Train Loss,Val Loss,  VAL AUPRC ,Learning Rate\n' + row(1, '0.42'));

    const rows = await new TrainingLogTail(csvPath, ' val auprc').poll();

    assert.deepEqual(valuesOf(rows), [0.42]);
    // Metric keys keep the file's spelling, trimmed.
    assert.ok('VAL AUPRC' in rows[0].metrics);
  });

  test('byte-order mark and CRLF', async () => {
    const csvPath = newCsvPath();
    const text = ('\uFEFF' + HEADER + '\n' + row(1, '0.1') + row(2, '0.2')).replace(/\n/g, '\r\n');
    write(csvPath, Buffer.from(text, 'utf8'));
    const tail = new TrainingLogTail(csvPath, 'Val auprc');

    assert.deepEqual(valuesOf(await tail.poll()), [0.1, 0.2]);
    // The last cell must not keep the carriage return.
    assert.equal(tail.rows()[1].metrics['Learning Rate'], 0.0001);
  });

  test('partial last line waits for its newline', async () => {
    const csvPath = newCsvPath();
    const tail = new TrainingLogTail(csvPath, 'Val auprc');
    write(csvPath, HEADER + '\n' + row(1, '0.1') + '2,10.0,0.5,0.4,0.2');

    assert.deepEqual(epochsOf(await tail.poll()), [1]);

    append(csvPath, '5,0.0001\n');
    const rows = await tail.poll();
    assert.deepEqual(epochsOf(rows), [2]);
    // The row is parsed whole, not as the two halves written.
    assert.equal(rows[0].value, 0.25);
  });

  test('partial header waits for its newline', async () => {
    const csvPath = newCsvPath();
    const tail = new TrainingLogTail(csvPath, 'Val auprc');
    write(csvPath, 'Epoch,Epoch Time,Train Lo');

    assert.deepEqual(await tail.poll(), []);

    append(csvPath, 'ss,Val Loss,Val auprc,Learning Rate\n' + row(1, '0.3'));
    assert.deepEqual(valuesOf(await tail.poll()), [0.3]);
  });

  test('final poll takes last line without newline', async () => {
    const csvPath = newCsvPath();
    const tail = new TrainingLogTail(csvPath, 'Val auprc');
    write(csvPath, HEADER + '\n' + row(1, '0.1') + '2,10.0,0.5,0.4,0.2,0.0001');

    assert.deepEqual(epochsOf(await tail.poll()), [1]);
    assert.deepEqual(epochsOf(await tail.poll({ final: true })), [2]);
    assert.deepEqual(epochsOf(tail.rows()), [1, 2]);
  });

  test('duplicate epoch keeps first row', async () => {
    const csvPath = newCsvPath();
    const tail = new TrainingLogTail(csvPath, 'Val auprc');
    write(csvPath, HEADER + '\n' + row(1, '0.1') + row(2, '0.2') + row(2, '0.9'));

    assert.deepEqual(valuesOf(await tail.poll()), [0.1, 0.2]);

    // A restarted pipeline writes its epochs again; only the new epoch 3 is returned.
    append(csvPath, row(1, '0.8') + row(2, '0.8') + row(3, '0.3'));
    assert.deepEqual(epochsOf(await tail.poll()), [3]);
    assert.deepEqual(valuesOf(tail.rows()), [0.1, 0.2, 0.3]);
  });

  test('row without integer epoch skipped', async () => {
    const csvPath = newCsvPath();
    write(csvPath, HEADER + '\n' + row(1, '0.1') + ',1,1,1,0.5,1\nabc,1,1,1,0.5,1\n1.5,1,1,1,0.5,1\n\n' + row(2, '0.2'));

    assert.deepEqual(epochsOf(await readTrainingLog(csvPath, 'Val auprc')), [1, 2]);
  });

  test('short row gives null cells', async () => {
    const csvPath = newCsvPath();
    write(csvPath, HEADER + '\n' + '1,10.0,0.5\n');

    const [first] = await readTrainingLog(csvPath, 'Val auprc');

    assert.equal(first.value, null);
    assert.equal(first.metrics['Learning Rate'], null);
  });

  test('objective column missing', async () => {
    const csvPath = newCsvPath();
    write(csvPath, 'Epoch,Epoch Time,Train Loss,Val Loss,Val auroc,Learning Rate\n' + row(1, '0.1'));
    const tail = new TrainingLogTail(csvPath, 'Val auprc');

    const error = await tail.poll().catch((caught: unknown) => caught);
    assert.ok(error instanceof ObjectiveColumnMissingError);
    assert.ok(error instanceof TrainingLogFormatError);
    assert.deepEqual(error.columns, ['Epoch', 'Epoch Time', 'Train Loss', 'Val Loss', 'Val auroc', 'Learning Rate']);
    assert.match(error.message, /"Val auprc" not found/);
    assert.match(error.message, /Val auroc/);
    // The error repeats on every later poll instead of turning into "no rows".
    await assert.rejects(tail.poll(), ObjectiveColumnMissingError);
  });

  test('epoch column missing', async () => {
    const csvPath = newCsvPath();
    write(csvPath, 'Step,Val auprc\n1,0.5\n');

    await assert.rejects(readTrainingLog(csvPath, 'Val auprc'), TrainingLogFormatError);
  });

  test('truncated file read again', async () => {
    const csvPath = newCsvPath();
    const tail = new TrainingLogTail(csvPath, 'Val auprc');
    write(csvPath, HEADER + '\n' + row(1, '0.1') + row(2, '0.2') + row(3, '0.3'));
    assert.deepEqual(epochsOf(await tail.poll()), [1, 2, 3]);

    // A restarted pipeline rewrites the file from scratch: shorter than what was read.
    write(csvPath, HEADER + '\n' + row(1, '0.7'));
    assert.deepEqual(await tail.poll(), []);

    append(csvPath, row(2, '0.7') + row(3, '0.7') + row(4, '0.4'));
    assert.deepEqual(epochsOf(await tail.poll()), [4]);
    assert.deepEqual(valuesOf(tail.rows()), [0.1, 0.2, 0.3, 0.4]);
  });

  test('replaced file read again', async () => {
    const csvPath = newCsvPath();
    const tail = new TrainingLogTail(csvPath, 'Val auprc');
    write(csvPath, HEADER + '\n' + row(1, '0.1'));
    assert.deepEqual(epochsOf(await tail.poll()), [1]);

    // Same length as before plus one row, but a new file (inode): its own header is read again.
    const replacement = path.join(path.dirname(csvPath), 'next.csv');
    fs.writeFileSync(replacement, 'epoch,epoch time,train loss,val loss,learning rate,val auprc\n' + '1,1,1,1,1,0.9\n2,1,1,1,1,0.2\n');
    fs.renameSync(replacement, csvPath);

    const rows = await tail.poll();
    assert.deepEqual(epochsOf(rows), [2]);
    assert.deepEqual(valuesOf(rows), [0.2]);
  });

  test('reads only appended bytes', async () => {
    const csvPath = newCsvPath();
    const tail = new TrainingLogTail(csvPath, 'Val auprc');
    const first = HEADER + '\n' + row(1, '0.1');
    write(csvPath, first);
    await tail.poll();

    // Overwrite what was already read, in place and at the same length, then append a row.
    const fd = fs.openSync(csvPath, 'r+');
    fs.writeSync(fd, 'x'.repeat(first.length - 1), 0);
    fs.closeSync(fd);
    append(csvPath, row(2, '0.2'));

    // Only the appended bytes are parsed, so the garbage before them is never seen.
    assert.deepEqual(valuesOf(await tail.poll()), [0.2]);
  });

  test('quoted cell spanning lines', async () => {
    const csvPath = newCsvPath();
    const tail = new TrainingLogTail(csvPath, 'Val auprc');
    write(csvPath, 'Epoch,"Val\nNote",Val auprc\n1,"a\n');

    assert.deepEqual(await tail.poll(), []);

    append(csvPath, 'b",0.5\n');
    const rows = await tail.poll();
    assert.deepEqual(valuesOf(rows), [0.5]);
    assert.ok('Val\nNote' in rows[0].metrics);
  });

  test('chunked writes match whole read', async () => {
    const text = fs.readFileSync(path.join(FIXTURES, 'v3_train_4metrics.csv'));
    const csvPath = newCsvPath();
    const tail = new TrainingLogTail(csvPath, 'Val auprc');
    write(csvPath, '');

    // Odd chunk sizes split lines, numbers and the CRLF pairs at every possible place.
    for (let start = 0; start < text.length; start += 37) {
      fs.appendFileSync(csvPath, text.subarray(start, start + 37));
      await tail.poll();
    }

    const whole = await readTrainingLog(path.join(FIXTURES, 'v3_train_4metrics.csv'), 'Val auprc');
    assert.deepEqual(tail.rows(), whole);
  });
});

describe('parseCell', () => {
  const cases: Array<[string | undefined, number | null]> = [
    ['0.5', 0.5],
    [' 0.5 ', 0.5],
    ['-2', -2],
    ['1e-3', 0.001],
    ['1.3171552112813489e-05', 1.3171552112813489e-5],
    ['.5', 0.5],
    ['', null],
    ['   ', null],
    [undefined, null],
    ['nan', Number.NaN],
    ['NaN', Number.NaN],
    ['-nan', Number.NaN],
    ['inf', Infinity],
    ['-inf', -Infinity],
    ['+inf', Infinity],
    ['Infinity', Infinity],
    ['-Infinity', -Infinity],
    ['abc', null],
    ['0x10', null],
    ['0.5.1', null],
    ['1,5', null],
  ];
  for (const [cell, expected] of cases) {
    test(`cell ${JSON.stringify(cell)}`, () => {
      assert.equal(parseCell(cell), expected);
    });
  }

  test('nan and inf rows', async () => {
    const csvPath = newCsvPath();
    write(csvPath, HEADER + '\n' + row(1, 'nan') + row(2, 'inf') + row(3, '-inf') + row(4, '') + row(5, 'oops'));

    assert.deepEqual(valuesOf(await readTrainingLog(csvPath, 'Val auprc')), [Number.NaN, Infinity, -Infinity, null, null]);
  });
});

describe('bestValue', () => {
  const rowsWith = (values: Array<number | null>): EpochRow[] =>
    values.map((value, index) => ({ epoch: index + 1, value, metrics: {} }));

  const cases: Array<{ name: string; values: Array<number | null>; max: number | null; min: number | null }> = [
    { name: 'plain values', values: [0.2, 0.9, 0.5], max: 0.9, min: 0.2 },
    { name: 'null cells skipped', values: [null, 0.4, null, 0.3], max: 0.4, min: 0.3 },
    { name: 'NaN skipped', values: [Number.NaN, 0.4, 0.3], max: 0.4, min: 0.3 },
    { name: 'all NaN', values: [Number.NaN, null, Number.NaN], max: Number.NaN, min: Number.NaN },
    { name: 'infinity kept', values: [0.4, Infinity, -Infinity], max: Infinity, min: -Infinity },
    { name: 'all null', values: [null, null], max: null, min: null },
    { name: 'no rows', values: [], max: null, min: null },
  ];
  for (const { name, values, max, min } of cases) {
    test(`bestValue ${name}`, () => {
      assert.equal(bestValue(rowsWith(values), 'maximize'), max);
      assert.equal(bestValue(rowsWith(values), 'minimize'), min);
    });
  }
});

describe('readTrainingLog', () => {
  test('missing file', async () => {
    assert.deepEqual(await readTrainingLog(path.join(tmpRoot, 'absent.csv'), 'Val auprc'), []);
  });

  const fixtures = [
    { file: 'v5_train_4metrics.csv', epochs: 19 },
    { file: 'v3_train_4metrics.csv', epochs: 27 },
  ];
  for (const { file, epochs } of fixtures) {
    test(`fixture ${file}`, async () => {
      const csvPath = path.join(FIXTURES, file);
      const expected = maxAuprcFromText(fs.readFileSync(csvPath, 'utf8'));

      const rows = await readTrainingLog(csvPath, 'val AUPRC');

      assert.equal(rows.length, epochs);
      assert.equal(expected.rows, epochs);
      assert.deepEqual(epochsOf(rows), Array.from({ length: epochs }, (_, index) => index + 1));
      assert.equal(bestValue(rows, 'maximize'), expected.max);
      assert.equal(Object.keys(rows[0].metrics).length, 8);
    });
  }
});
