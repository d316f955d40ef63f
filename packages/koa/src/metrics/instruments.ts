import type {
  Attributes,
  Histogram,
  Meter,
  Observable,
  ObservableCallback,
  ObservableResult,
} from '@opentelemetry/api';
import {
  ATTR,
  CALLBACK_STATUS_CODES,
  type CallbackFormat,
  type CallbackStatusCode,
  CONTRACT,
  ERROR_TYPES,
  type ErrorType,
  FAILURE_REASONS,
  type FailureReason,
  FORMATS,
  FORWARD_OUTCOMES,
  type ForwardOutcome,
  INSTRUMENT,
  OUTCOMES,
  type Outcome,
  SOLVER_REQUEST_OUTCOMES,
  type SolverEndpoint,
  type SolverRequestOutcome,
} from './contract.ts';

/** Values the observable gauges read at collection time; both must be O(1). */
export interface GaugeSources {
  /** Seconds since the last accepted callback (since start-up before the first). */
  secondsSinceLastCallback(): number;
  /** Tasks currently pending delivery. */
  pendingTasks(): number;
  /** Forwards waiting for the app, and the age in seconds of the oldest (both 0 when forwarding is off). */
  forwardBacklog?(): number;
  forwardOldestPendingAge?(): number;
}

function spec(name: string) {
  const found = CONTRACT.find((s) => s.name === name);
  if (!found) throw new Error(`metric ${name} is not in the contract`);
  return found;
}

function frozenTable<K extends string | number>(keys: readonly K[], make: (k: K) => Attributes): Map<K, Attributes> {
  return new Map(keys.map((k) => [k, Object.freeze(make(k))]));
}

/** Monotonic totals the SDK reads at collection time: the hot path only bumps a number, never the SDK. */
class Totals<K extends string | number> {
  readonly #index: Map<K, number>;
  readonly #attrs: Attributes[];
  readonly #values: Float64Array;

  constructor(cells: ReadonlyArray<readonly [K, Attributes]>) {
    this.#index = new Map(cells.map(([k], i) => [k, i]));
    this.#attrs = cells.map(([, a]) => Object.freeze(a));
    this.#values = new Float64Array(cells.length);
  }

  add(key: K, n: number): void {
    const i = this.#index.get(key);
    if (i !== undefined) this.#values[i]! += n;
  }

  /** Every cell, zeros included, so each series of a closed set exists from start-up. */
  observe(result: ObservableResult): void {
    for (let i = 0; i < this.#attrs.length; i++) result.observe(this.#values[i]!, this.#attrs[i]);
  }
}

const NONE = '' as const;
const single = () => new Totals<typeof NONE>([[NONE, {}]]);

/**
 * The receiver's instruments, created from a Meter and created again by `bind()` when the meter changes (an app whose
 * SDK starts after the monitor). Counters and the last-callback gauge are observable: the callback path adds to plain
 * numbers (so recording costs no SDK call and no attribute hashing) and the SDK reads them at collection, so totals
 * counted before a rebind are still reported after it; only the histograms are recorded per request, with attribute
 * objects built once and frozen. Every attribute value comes from the contract's closed sets.
 */
export class ReceiverMetrics {
  #duration!: Histogram;
  #deliveryDuration!: Histogram;
  readonly #callbacks: Totals<string>;
  readonly #errors = new Totals<ErrorType>(ERROR_TYPES.map((t) => [t, { [ATTR.errorType]: t }]));
  readonly #failures = new Totals<FailureReason>(FAILURE_REASONS.map((r) => [r, { [ATTR.reason]: r }]));
  readonly #duplicates = single();
  readonly #submitted = single();
  readonly #delivered = single();
  readonly #missed = single();
  readonly #late = single();
  readonly #recovered = single();
  #recoveredCount = 0;
  readonly #forwardAttempts = new Totals<ForwardOutcome>(FORWARD_OUTCOMES.map((o) => [o, { [ATTR.outcome]: o }]));
  readonly #forwardOutcomeAttrs = frozenTable(FORWARD_OUTCOMES, (o) => ({ [ATTR.outcome]: o }));
  #forwardDuration!: Histogram;
  readonly #deadLetters = single();
  #lastReceived: number | undefined;

  readonly #statusAttrs = frozenTable(CALLBACK_STATUS_CODES, (c) => ({ [ATTR.statusCode]: c }));
  readonly #outcomeAttrs = frozenTable(OUTCOMES, (o) => ({ [ATTR.outcome]: o }));

  readonly #sources: GaugeSources;
  /** The observable instruments of the current meter with their callbacks, detached again by the next bind. */
  #observed: Array<readonly [Observable, ObservableCallback]> = [];

  constructor(meter: Meter, sources: GaugeSources) {
    this.#callbacks = new Totals(
      OUTCOMES.flatMap((o) => FORMATS.map((f) => [`${o}/${f}`, { [ATTR.outcome]: o, [ATTR.format]: f }] as const)),
    );
    this.#sources = sources;
    this.bind(meter);
  }

  /** Creates every instrument on `meter`; the previous meter's observable callbacks are removed, totals kept. */
  bind(meter: Meter): void {
    for (const [instrument, callback] of this.#observed) instrument.removeCallback(callback);
    this.#observed = [];
    const sources = this.#sources;
    const observe = (instrument: Observable, callback: ObservableCallback) => {
      instrument.addCallback(callback);
      this.#observed.push([instrument, callback]);
    };
    const counter = <K extends string | number>(name: string, totals: Totals<K>) => {
      const s = spec(name);
      observe(meter.createObservableCounter(s.name, { unit: s.unit, description: s.description }), (r) =>
        totals.observe(r),
      );
    };
    const gauge = (name: string, read: (r: ObservableResult) => void) => {
      const s = spec(name);
      observe(meter.createObservableGauge(s.name, { unit: s.unit, description: s.description }), read);
    };
    const histogram = (name: string) => {
      const s = spec(name);
      return meter.createHistogram(s.name, {
        unit: s.unit,
        description: s.description,
        advice: { explicitBucketBoundaries: [...(s.buckets ?? [])] },
      });
    };
    counter(INSTRUMENT.callbacks, this.#callbacks);
    counter(INSTRUMENT.callbackErrors, this.#errors);
    this.#duration = histogram(INSTRUMENT.callbackDuration);
    gauge(INSTRUMENT.lastReceivedTimestamp, (r) => {
      if (this.#lastReceived !== undefined) r.observe(this.#lastReceived);
    });
    gauge(INSTRUMENT.timeSinceLast, (r) => r.observe(sources.secondsSinceLastCallback()));
    counter(INSTRUMENT.duplicates, this.#duplicates);
    counter(INSTRUMENT.tasksSubmitted, this.#submitted);
    counter(INSTRUMENT.tasksDelivered, this.#delivered);
    counter(INSTRUMENT.tasksMissed, this.#missed);
    counter(INSTRUMENT.tasksLate, this.#late);
    gauge(INSTRUMENT.tasksPending, (r) => r.observe(sources.pendingTasks()));
    this.#deliveryDuration = histogram(INSTRUMENT.taskDeliveryDuration);
    counter(INSTRUMENT.callbackFailures, this.#failures);
    counter(INSTRUMENT.tasksRecovered, this.#recovered);
    counter(INSTRUMENT.forwardAttempts, this.#forwardAttempts);
    this.#forwardDuration = histogram(INSTRUMENT.forwardDuration);
    gauge(INSTRUMENT.forwardBacklog, (r) => r.observe(sources.forwardBacklog?.() ?? 0));
    gauge(INSTRUMENT.forwardOldestPendingAge, (r) => r.observe(sources.forwardOldestPendingAge?.() ?? 0));
    counter(INSTRUMENT.forwardDeadLetters, this.#deadLetters);
  }

  /** One attempt to hand a result to the app, by outcome, and how long it took. */
  forwardAttempt(outcome: ForwardOutcome, seconds: number): void {
    this.#forwardAttempts.add(outcome, 1);
    this.#forwardDuration.record(Math.max(0, seconds), this.#forwardOutcomeAttrs.get(outcome));
  }

  /** A forward given up after FORWARD_MAX_AGE. */
  deadLetter(): void {
    this.#deadLetters.add(NONE, 1);
  }

  callback(outcome: Outcome, format: CallbackFormat): void {
    this.#callbacks.add(`${outcome}/${format}`, 1);
  }

  error(type: ErrorType): void {
    this.#errors.add(type, 1);
  }

  /**
   * Counts one accepted callback that reports a failed task, by its reason (map the solver's code with
   * `failureReason(code)` from the contract). Every reason's series exists at 0 from start-up, so `increase()` sees
   * the first failure of each kind.
   */
  failure(reason: FailureReason): void {
    this.#failures.add(reason, 1);
  }

  /** Records handling latency; `status` outside the contract's set is recorded as 500 so series stay bounded. */
  duration(status: number, seconds: number): void {
    const attrs = this.#statusAttrs.get(status as CallbackStatusCode) ?? this.#statusAttrs.get(500);
    this.#duration.record(seconds, attrs);
  }

  lastReceived(unixSeconds: number): void {
    this.#lastReceived = unixSeconds;
  }

  duplicate(): void {
    this.#duplicates.add(NONE, 1);
  }

  submitted(count: number): void {
    if (count > 0) this.#submitted.add(NONE, count);
  }

  delivered(outcome: Outcome, secondsSinceSubmit: number): void {
    this.#delivered.add(NONE, 1);
    this.#deliveryDuration.record(Math.max(0, secondsSinceSubmit), this.#outcomeAttrs.get(outcome));
  }

  missed(count: number): void {
    if (count > 0) this.#missed.add(NONE, count);
  }

  late(): void {
    this.#late.add(NONE, 1);
  }

  /** One pending task delivered by asking the solver (src/solver/RecoveryPoller.ts); `delivered` counts it too. */
  recovered(): void {
    this.#recovered.add(NONE, 1);
    this.#recoveredCount++;
  }

  /** Tasks this instance recovered so far (the health report shows it beside the store-wide delivered). */
  get recoveredCount(): number {
    return this.#recoveredCount;
  }
}

/** One configured solver as the metrics see it: its name (a label value) and the endpoints its protocol has. */
export interface SolverMetricsEntry {
  readonly name: string;
  readonly endpoints: readonly SolverEndpoint[];
  /** SOLVER_<NAME>_LOW_BALANCE, exported so the alert rule can compare each solver with its own threshold. */
  readonly lowBalance?: number | undefined;
}

/**
 * The solver API instruments (requests by solver, endpoint and outcome; latency; balance). Separate from
 * ReceiverMetrics because their label values come from configuration: every solver × endpoint × outcome series exists
 * at 0 from start-up (so `increase()` sees the first failure), and a name outside the configured set records nothing.
 */
export class SolverMetrics {
  readonly #requests: Totals<string>;
  readonly #duration: Histogram;
  readonly #durationAttrs = new Map<string, Attributes>();
  readonly #balances = new Map<string, number>();
  readonly #balanceAttrs = new Map<string, Attributes>();

  constructor(meter: Meter, solvers: readonly SolverMetricsEntry[]) {
    this.#requests = new Totals(
      solvers.flatMap((s) =>
        s.endpoints.flatMap((e) =>
          SOLVER_REQUEST_OUTCOMES.map(
            (o) => [`${s.name}/${e}/${o}`, { [ATTR.solver]: s.name, [ATTR.endpoint]: e, [ATTR.outcome]: o }] as const,
          ),
        ),
      ),
    );
    for (const s of solvers) {
      this.#balanceAttrs.set(s.name, Object.freeze({ [ATTR.solver]: s.name }));
      for (const e of s.endpoints) {
        this.#durationAttrs.set(`${s.name}/${e}`, Object.freeze({ [ATTR.solver]: s.name, [ATTR.endpoint]: e }));
      }
    }
    const requests = spec(INSTRUMENT.solverRequests);
    meter
      .createObservableCounter(requests.name, { unit: requests.unit, description: requests.description })
      .addCallback((r) => this.#requests.observe(r));
    const duration = spec(INSTRUMENT.solverRequestDuration);
    this.#duration = meter.createHistogram(duration.name, {
      unit: duration.unit,
      description: duration.description,
      advice: { explicitBucketBoundaries: [...(duration.buckets ?? [])] },
    });
    const balance = spec(INSTRUMENT.solverBalance);
    meter
      .createObservableGauge(balance.name, { unit: balance.unit, description: balance.description })
      .addCallback((r) => {
        for (const [name, value] of this.#balances) r.observe(value, this.#balanceAttrs.get(name));
      });
    const threshold = spec(INSTRUMENT.solverLowBalanceThreshold);
    const thresholds = solvers.filter((s) => s.lowBalance !== undefined);
    meter
      .createObservableGauge(threshold.name, { unit: threshold.unit, description: threshold.description })
      .addCallback((r) => {
        for (const s of thresholds) r.observe(s.lowBalance as number, this.#balanceAttrs.get(s.name));
      });
  }

  /** Counts one request and records its latency; unknown solver or endpoint: nothing (series stay bounded). */
  request(solver: string, endpoint: SolverEndpoint, outcome: SolverRequestOutcome, seconds: number): void {
    const attrs = this.#durationAttrs.get(`${solver}/${endpoint}`);
    if (!attrs) return;
    this.#requests.add(`${solver}/${endpoint}/${outcome}`, 1);
    this.#duration.record(Math.max(0, seconds), attrs);
  }

  /** The balance the solver last reported; shown from its first answer on. */
  balance(solver: string, value: number): void {
    if (this.#balanceAttrs.has(solver) && Number.isFinite(value)) this.#balances.set(solver, value);
  }
}
