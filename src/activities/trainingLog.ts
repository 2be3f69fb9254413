/**
 * Reads a pipeline's `training_step.csv` while the pipeline is still appending to it.
 *
 * The file has the header `Epoch,Epoch Time,Train Loss,Val Loss,Val <metric>...,Learning Rate`
 * and one row per finished epoch. Parsing rules:
 * - Header names match case-insensitively after trimming spaces. A UTF-8 byte-order mark and
 *   CRLF line ends are accepted.
 * - A row counts only once its line end has been written. After the process has exited,
 *   `poll({ final: true })` also accepts a last row without a line end.
 * - The first row for an epoch wins. A pipeline that restarted writes its epochs again, and those
 *   later duplicates are ignored, so an intermediate value reported for an epoch never changes.
 * - Cells: empty -> null; `nan`, `inf`, `-inf`, `infinity` (any case, optional sign) -> NaN and
 *   ±Infinity; any other cell that is not a decimal number -> null. A row whose Epoch cell is not
 *   an integer is skipped.
 * - A file that shrank or was replaced (another inode) is read again from its start. Epochs
 *   already accepted from the old file stay accepted and are not returned again.
 */
import * as fs from 'node:fs';
import { parse } from 'csv-parse/sync';
import type { Direction } from '../common/types';

export interface EpochRow {
  /** Value of the `Epoch` column; pipelines count epochs from 1. */
  epoch: number;
  /** Value of the objective column, or null when its cell is empty or not a number. */
  value: number | null;
  /** Every column except `Epoch`, keyed by its trimmed header name in the file's spelling. */
  metrics: Record<string, number | null>;
}

/**
 * Raised when the file cannot be read as a training log: no `Epoch` column, no objective column,
 * or text that is not valid CSV. Running the same config again is unlikely to help.
 */
export class TrainingLogFormatError extends Error {
  override name = 'TrainingLogFormatError';
}

/** Raised when the header lacks the objective column. */
export class ObjectiveColumnMissingError extends TrainingLogFormatError {
  override name = 'ObjectiveColumnMissingError';

  constructor(
    readonly csvPath: string,
    readonly objectiveColumn: string,
    readonly columns: string[],
  ) {
    super(
      `objective column "${objectiveColumn}" not found in ${csvPath}; its columns are: ${columns.join(', ')}. ` +
        'Set optimization.objective_metric to a metric that training_config.logging.validation_metrics lists.',
    );
  }
}

const NEWLINE = 0x0a;
const DECIMAL_NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const NOT_A_NUMBER = /^[+-]?nan$/i;
const INFINITY = /^([+-]?)inf(?:inity)?$/i;

/** Parses one cell: empty or non-numeric -> null, nan/inf spellings -> NaN/±Infinity. */
export function parseCell(cell: string | undefined): number | null {
  const text = (cell ?? '').trim();
  if (text === '') return null;
  if (NOT_A_NUMBER.test(text)) return Number.NaN;

  const infinity = INFINITY.exec(text);
  if (infinity) return infinity[1] === '-' ? -Infinity : Infinity;

  // Number() alone would also accept hex, binary and blank strings.
  return DECIMAL_NUMBER.test(text) ? Number(text) : null;
}

interface FileIdentity {
  dev: number;
  ino: number;
}

interface Header {
  columns: string[];
  epochIndex: number;
  objectiveIndex: number;
}

export class TrainingLogTail {
  /** Bytes of the current file read so far, the pending part included. */
  private readPosition = 0;
  /** Bytes after the last line end read, kept until their line is complete. */
  private pending: Buffer = Buffer.alloc(0);
  private identity: FileIdentity | null = null;
  private header: Header | null = null;
  private headerError: Error | null = null;
  private readonly seenEpochs = new Set<number>();
  private readonly accepted: EpochRow[] = [];

  constructor(
    readonly csvPath: string,
    readonly objectiveColumn: string,
  ) {}

  /**
   * Reads what was appended since the last poll and returns the rows of epochs not seen before.
   * Returns [] while the file does not exist. Throws ObjectiveColumnMissingError or
   * TrainingLogFormatError once the header shows the file cannot be used, and on every later poll.
   */
  async poll(options: { final?: boolean } = {}): Promise<EpochRow[]> {
    const final = options.final ?? false;

    let handle: fs.promises.FileHandle;
    try {
      handle = await fs.promises.open(this.csvPath, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }

    let appended: Buffer;
    try {
      const stat = await handle.stat();
      if (this.isNewFile(stat)) this.restart();
      this.identity = { dev: stat.dev, ino: stat.ino };
      appended = await readRange(handle, this.readPosition, stat.size);
    } finally {
      await handle.close();
    }

    if (this.headerError) throw this.headerError;
    this.readPosition += appended.length;
    return this.consume(Buffer.concat([this.pending, appended]), final);
  }

  /** Returns every accepted row so far, in order of arrival. */
  rows(): EpochRow[] {
    return [...this.accepted];
  }

  /** Returns whether the file exists now. */
  exists(): boolean {
    return fs.existsSync(this.csvPath);
  }

  private isNewFile(stat: fs.Stats): boolean {
    if (this.identity === null) return false;
    const replaced = stat.ino !== this.identity.ino || stat.dev !== this.identity.dev;
    return replaced || stat.size < this.readPosition;
  }

  private restart(): void {
    this.readPosition = 0;
    this.pending = Buffer.alloc(0);
    this.header = null;
    this.headerError = null;
  }

  /** Parses the complete lines of `data` (all of it when final) and keeps the rest pending. */
  private consume(data: Buffer, final: boolean): EpochRow[] {
    const end = final ? data.length : data.lastIndexOf(NEWLINE) + 1;
    const complete = data.subarray(0, end);
    this.pending = data.subarray(end);
    if (complete.length === 0) return [];

    let records: string[][];
    try {
      records = parse(complete, { bom: true, trim: true, skip_empty_lines: true, relax_column_count: true });
    } catch (error) {
      // A quoted cell may span lines, so wait for its closing quote unless the file is complete.
      if (!final && (error as { code?: string }).code === 'CSV_QUOTE_NOT_CLOSED') {
        this.pending = data;
        return [];
      }
      throw new TrainingLogFormatError(`invalid CSV in ${this.csvPath}: ${(error as Error).message}`);
    }

    if (this.header === null && records.length > 0) {
      this.header = this.readHeader(records.shift() as string[]);
    }
    if (this.headerError) throw this.headerError;
    return records.flatMap((record) => this.acceptRecord(record));
  }

  private readHeader(record: string[]): Header {
    const columns = record.map((name) => name.trim());
    const find = (name: string) => columns.findIndex((column) => column.toLowerCase() === name.trim().toLowerCase());
    const header = { columns, epochIndex: find('Epoch'), objectiveIndex: find(this.objectiveColumn) };

    if (header.epochIndex < 0) {
      this.headerError = new TrainingLogFormatError(
        `no "Epoch" column in ${this.csvPath}; its columns are: ${columns.join(', ')}. ` +
          'A training log starts with the header "Epoch,Epoch Time,Train Loss,Val Loss,...".',
      );
    } else if (header.objectiveIndex < 0) {
      this.headerError = new ObjectiveColumnMissingError(this.csvPath, this.objectiveColumn, columns);
    }
    return header;
  }

  private acceptRecord(record: string[]): EpochRow[] {
    const header = this.header as Header;
    const epoch = parseCell(record[header.epochIndex]);
    if (epoch === null || !Number.isInteger(epoch)) return [];
    if (this.seenEpochs.has(epoch)) return [];

    const metrics: Record<string, number | null> = {};
    header.columns.forEach((column, index) => {
      if (index !== header.epochIndex) metrics[column] = parseCell(record[index]);
    });
    const row = { epoch, value: parseCell(record[header.objectiveIndex]), metrics };

    this.seenEpochs.add(epoch);
    this.accepted.push(row);
    return [row];
  }
}

async function readRange(handle: fs.promises.FileHandle, start: number, end: number): Promise<Buffer> {
  const buffer = Buffer.alloc(Math.max(0, end - start));
  let filled = 0;
  while (filled < buffer.length) {
    const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, start + filled);
    if (bytesRead === 0) break; // the file shrank while being read; the next poll starts over
    filled += bytesRead;
  }
  return buffer.subarray(0, filled);
}

/**
 * Returns the best objective value: the max when maximizing, the min when minimizing.
 * Null cells are skipped. NaN cells are skipped unless every value is NaN, which returns NaN.
 * Returns null when no row has a value.
 */
export function bestValue(rows: EpochRow[], direction: Direction): number | null {
  const values = rows.map((row) => row.value).filter((value): value is number => value !== null);
  if (values.length === 0) return null;

  const numbers = values.filter((value) => !Number.isNaN(value));
  if (numbers.length === 0) return Number.NaN;
  return direction === 'maximize' ? Math.max(...numbers) : Math.min(...numbers);
}

/** Reads a whole training log with final semantics; returns [] when the file does not exist. */
export async function readTrainingLog(csvPath: string, objectiveColumn: string): Promise<EpochRow[]> {
  return new TrainingLogTail(csvPath, objectiveColumn).poll({ final: true });
}
