import type { Attributes, Counter, Gauge, Histogram, Meter, ObservableResult } from '@opentelemetry/api';
import {
  ATTR,
  CALLBACK_STATUS_CODES,
  type CallbackFormat,
  type CallbackStatusCode,
  CONTRACT,
  ERROR_TYPES,
  type ErrorType,
  FORMATS,
  INSTRUMENT,
  OUTCOMES,
  type Outcome,
} from './contract.ts';

/** Values the observable gauges read at collection time; both must be O(1). */
export interface GaugeSources {
  /** Seconds since the last accepted callback (since start-up before the first). */
  secondsSinceLastCallback(): number;
  /** Tasks currently pending delivery. */
  pendingTasks(): number;
}

function spec(name: string) {
  const found = CONTRACT.find((s) => s.name === name);
  if (!found) throw new Error(`metric ${name} is not in the contract`);
  return found;
}

function frozenTable<K extends string | number>(keys: readonly K[], make: (k: K) => Attributes): Map<K, Attributes> {
  return new Map(keys.map((k) => [k, Object.freeze(make(k))]));
}

/**
 * The receiver's instruments, created once from a Meter. Attribute objects are built once and frozen so the hot
 * path neither allocates nor lets a caller invent a label value outside the contract's closed sets.
 */
export class ReceiverMetrics {
  readonly #callbacks: Counter;
  readonly #errors: Counter;
  readonly #duration: Histogram;
  readonly #lastReceived: Gauge;
  readonly #duplicates: Counter;
  readonly #submitted: Counter;
  readonly #delivered: Counter;
  readonly #missed: Counter;
  readonly #late: Counter;
  readonly #deliveryDuration: Histogram;

  readonly #callbackAttrs = new Map<string, Attributes>();
  readonly #errorAttrs = frozenTable(ERROR_TYPES, (t) => ({ [ATTR.errorType]: t }));
  readonly #statusAttrs = frozenTable(CALLBACK_STATUS_CODES, (c) => ({ [ATTR.statusCode]: c }));
  readonly #outcomeAttrs = frozenTable(OUTCOMES, (o) => ({ [ATTR.outcome]: o }));

  constructor(meter: Meter, sources: GaugeSources) {
    for (const o of OUTCOMES) {
      for (const f of FORMATS)
        this.#callbackAttrs.set(`${o}/${f}`, Object.freeze({ [ATTR.outcome]: o, [ATTR.format]: f }));
    }
    const counter = (name: string) => {
      const s = spec(name);
      return meter.createCounter(s.name, { unit: s.unit, description: s.description });
    };
    const histogram = (name: string) => {
      const s = spec(name);
      return meter.createHistogram(s.name, {
        unit: s.unit,
        description: s.description,
        advice: { explicitBucketBoundaries: [...(s.buckets ?? [])] },
      });
    };
    this.#callbacks = counter(INSTRUMENT.callbacks);
    this.#errors = counter(INSTRUMENT.callbackErrors);
    this.#duration = histogram(INSTRUMENT.callbackDuration);
    const last = spec(INSTRUMENT.lastReceivedTimestamp);
    this.#lastReceived = meter.createGauge(last.name, { unit: last.unit, description: last.description });
    this.#duplicates = counter(INSTRUMENT.duplicates);
    this.#submitted = counter(INSTRUMENT.tasksSubmitted);
    this.#delivered = counter(INSTRUMENT.tasksDelivered);
    this.#missed = counter(INSTRUMENT.tasksMissed);
    this.#late = counter(INSTRUMENT.tasksLate);
    this.#deliveryDuration = histogram(INSTRUMENT.taskDeliveryDuration);

    // Every counter series of the closed sets exists from start-up at 0: Prometheus' increase() cannot see a first
    // burst on a series that appears with its value already above zero, and ratio rules need both sides to exist.
    for (const attrs of this.#callbackAttrs.values()) this.#callbacks.add(0, attrs);
    for (const attrs of this.#errorAttrs.values()) this.#errors.add(0, attrs);
    for (const c of [this.#duplicates, this.#submitted, this.#delivered, this.#missed, this.#late]) c.add(0);

    const since = spec(INSTRUMENT.timeSinceLast);
    meter
      .createObservableGauge(since.name, { unit: since.unit, description: since.description })
      .addCallback((r: ObservableResult) => r.observe(sources.secondsSinceLastCallback()));
    const pending = spec(INSTRUMENT.tasksPending);
    meter
      .createObservableGauge(pending.name, { unit: pending.unit, description: pending.description })
      .addCallback((r: ObservableResult) => r.observe(sources.pendingTasks()));
  }

  callback(outcome: Outcome, format: CallbackFormat): void {
    this.#callbacks.add(1, this.#callbackAttrs.get(`${outcome}/${format}`));
  }

  error(type: ErrorType): void {
    this.#errors.add(1, this.#errorAttrs.get(type));
  }

  /** Records handling latency; `status` outside the contract's set is recorded as 500 so series stay bounded. */
  duration(status: number, seconds: number): void {
    const attrs = this.#statusAttrs.get(status as CallbackStatusCode) ?? this.#statusAttrs.get(500);
    this.#duration.record(seconds, attrs);
  }

  lastReceived(unixSeconds: number): void {
    this.#lastReceived.record(unixSeconds);
  }

  duplicate(): void {
    this.#duplicates.add(1);
  }

  submitted(count: number): void {
    if (count > 0) this.#submitted.add(count);
  }

  delivered(outcome: Outcome, secondsSinceSubmit: number): void {
    this.#delivered.add(1);
    this.#deliveryDuration.record(Math.max(0, secondsSinceSubmit), this.#outcomeAttrs.get(outcome));
  }

  missed(count: number): void {
    if (count > 0) this.#missed.add(count);
  }

  late(): void {
    this.#late.add(1);
  }
}
