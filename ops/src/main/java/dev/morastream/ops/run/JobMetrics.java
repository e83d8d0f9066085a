package dev.morastream.ops.run;

import dev.morastream.actors.evaluator.EvaluatorActor;
import dev.morastream.actors.events.MoraEvent;
import dev.morastream.actors.supervisor.RejectReason;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.actors.supervisor.Scores;
import dev.morastream.streams.StreamStats;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.Timer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The main job's Prometheus meters: stream counters (a {@link StreamStats.Observer}), consumer lag
 * (measured with the admin client), and training, evaluation and promotion meters fed by the
 * actors' {@link MoraEvent}s. Names and labels are listed in {@code docs/operations.md}.
 */
final class JobMetrics implements StreamStats.Observer {
    private static final Logger log = LoggerFactory.getLogger(JobMetrics.class);
    private static final Duration[] STEP_BUCKETS = seconds(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30);

    /** A gauge's value. */
    static final class Value {
        volatile double v;

        Value(double v) {
            this.v = v;
        }

        double get() {
            return v;
        }
    }

    private final MeterRegistry registry;
    private final Counter restarts;
    private final Map<String, Value> gauges = new ConcurrentHashMap<>();
    private final Map<String, List<Meter>> evalMeters = new ConcurrentHashMap<>();

    JobMetrics(MeterRegistry registry, StreamStats stats, List<String> domains, Map<String, Integer> servingVersions) {
        this.registry = registry;
        Gauge.builder("mora.stream.in.flight.records", stats, StreamStats::inFlight)
                .description("Records read from Kafka and not yet wholly handed to a trainer or dead-lettered").register(registry);
        FunctionCounter.builder("mora.stream.commits", stats, s -> s.commits.get())
                .description("Offset commits sent to Kafka after trainer checkpoints").register(registry);
        Map.of("trained_elsewhere", stats.trainedElsewhere, "lettered_elsewhere", stats.rejectedNotLettered).forEach((reason, count) ->
                FunctionCounter.builder("mora.stream.passed.over.records", count, java.util.concurrent.atomic.AtomicLong::get)
                        .tag("reason", reason)
                        .description("Records passed over by this node's streams: of a domain another stream trains (a cluster runs one per"
                                + " domain), or rejected and dead-lettered by another stream").register(registry));
        restarts = Counter.builder("mora.stream.restarts")
                .description("Restarts of the training stream from the trainers' checkpoints (after a trainer failure)").register(registry);
        double start = System.currentTimeMillis() / 1000.0;
        for (String d : domains) {
            gauge("mora.promotion.last.timestamp.seconds", "Epoch seconds of the last promotion (the process start until one)",
                    Tags.of("domain", d)).v = start;
            gauge("mora.serving.adapter.version", "N of the domain@vN in service (0: the base model)", Tags.of("domain", d)).v =
                    servingVersions.getOrDefault(d, 0);
            // present from the start, so dashboards and alerts see zeros rather than nothing
            steps(d);
            Counter.builder("mora.promotions").description("Adapter versions promoted to serving").tag("domain", d).register(registry);
            for (String reason : List.of("nan", "divergence", "exception")) {
                failures(d, reason);
            }
            for (String reason : List.of("memorization", "downstream", "retention", "non_finite", "error", "superseded")) {
                rejections(d, reason);
            }
        }
    }

    // ---- stream ----

    void streamRestarted() {
        restarts.increment();
    }

    @Override
    public void consumed(String topic) {
        Counter.builder("mora.stream.records.consumed").description("Records read from Kafka and decoded")
                .tag("topic", topic).register(registry).increment();
    }

    @Override
    public void deadLettered(String topic, String reason) {
        Counter.builder("mora.stream.records.dead.lettered").description("Records sent to the dead-letter topic, by reason")
                .tag("topic", topic).tag("reason", reason).register(registry).increment();
    }

    @Override
    public void batch(String domain, int records, long tokens) {
        Counter.builder("mora.stream.records.trained").description("Records whose last token reached a trainer")
                .tag("domain", domain).register(registry).increment(records);
        Counter.builder("mora.stream.batches").description("Packed batches taken by a trainer")
                .tag("domain", domain).register(registry).increment();
    }

    /** Measures log end offset minus committed offset of every partition of {@code topics} for {@code group}. */
    /** The consumer groups whose lag was measured here before: set to 0 once no longer run here (another node reports them). */
    private final java.util.Set<String> lagGroups = java.util.concurrent.ConcurrentHashMap.newKeySet();

    /**
     * Measures the lag of the consumer groups this node runs now ({@code group} tag); the gauges of
     * a group it ran before (its domain moved to another node, which reports it) go to 0, so a sum
     * over the cluster's nodes is the group's lag.
     */
    void measureLag(Admin admin, java.util.Collection<String> groups, List<String> topics) {
        for (String gone : lagGroups) {
            if (!groups.contains(gone)) {
                String prefix = key("mora.stream.consumer.lag.records", Tags.of("group", gone)) + "|";
                gauges.forEach((key, g) -> {
                    if (key.startsWith(prefix)) {
                        g.v = 0;
                    }
                });
                lagGroups.remove(gone);
            }
        }
        if (groups.isEmpty()) {
            return;
        }
        try {
            Map<TopicPartition, OffsetSpec> request = new java.util.HashMap<>();
            admin.describeTopics(topics).allTopicNames().get(10, TimeUnit.SECONDS).forEach((t, d) ->
                    d.partitions().forEach(p -> request.put(new TopicPartition(t, p.partition()), OffsetSpec.latest())));
            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends = admin.listOffsets(request).all().get(10, TimeUnit.SECONDS);
            for (String group : groups) {
                Map<TopicPartition, OffsetAndMetadata> committed =
                        admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(10, TimeUnit.SECONDS);
                ends.forEach((tp, info) -> {
                    OffsetAndMetadata c = committed.get(tp);
                    long lag = info.offset() - (c == null ? 0 : c.offset());
                    gauge("mora.stream.consumer.lag.records", "Log end offset minus the committed offset",
                            Tags.of("group", group, "topic", tp.topic(), "partition", Integer.toString(tp.partition()))).v = Math.max(0, lag);
                });
                lagGroups.add(group);
            }
        } catch (Exception e) {
            log.debug("consumer lag not measured: {}", e.toString());
        }
    }

    // ---- actors ----

    void on(MoraEvent e) {
        if (e instanceof MoraEvent.Stepped s) {
            steps(s.domain()).increment();
            Counter.builder("mora.train.tokens").description("Token positions trained").tag("domain", s.domain())
                    .register(registry).increment(s.tokens());
            Timer.builder("mora.train.step").description("Time of one training step (forward, backward, update)")
                    .tag("domain", s.domain()).serviceLevelObjectives(STEP_BUCKETS).register(registry)
                    .record(s.nanos(), TimeUnit.NANOSECONDS);
            gauge("mora.train.loss", "Batch loss: progressive (before the update) and training (after)",
                    Tags.of("domain", s.domain(), "kind", "progressive")).v = s.lossBefore();
            if (Double.isFinite(s.lossAfter())) {
                gauge("mora.train.loss", "Batch loss: progressive (before the update) and training (after)",
                        Tags.of("domain", s.domain(), "kind", "training")).v = s.lossAfter();
            }
            if (Double.isFinite(s.klToBase())) {
                gauge("mora.train.kl.to.base", "Mean KL(base || adapted) on the last batch's base rows (and prompts, when configured)",
                        Tags.of("domain", s.domain())).v = s.klToBase();
            }
            if (s.lr() > 0) {
                gauge("mora.train.learning.rate", "Learning rate of the last update", Tags.of("domain", s.domain())).v = s.lr();
            }
        } else if (e instanceof MoraEvent.TrainFailed f) {
            failures(f.domain(), f.reason()).increment();
            if (f.reason().equals("nan")) {
                gauge("mora.train.loss", "Batch loss: progressive (before the update) and training (after)",
                        Tags.of("domain", f.domain(), "kind", "progressive")).v = Double.NaN;
            }
        } else if (e instanceof MoraEvent.Checkpointed c) {
            Timer.builder("mora.train.checkpoint").description("Time to write a trainer checkpoint")
                    .tag("domain", c.domain()).register(registry).record(c.nanos(), TimeUnit.NANOSECONDS);
        } else if (e instanceof MoraEvent.Evaluated v) {
            evaluated(v);
        } else if (e instanceof MoraEvent.Decided d) {
            decided(d);
        } else if (e instanceof MoraEvent.MemberChanged m) {
            members(m);
        } else if (e instanceof MoraEvent.StateRepaired r) {
            Counter.builder("mora.state.repairs").description("Damaged state files repaired around (quarantined, fallback, fresh start, ignored)")
                    .tag("domain", r.domain()).tag("action", r.action()).register(registry).increment();
        } else if (e instanceof MoraEvent.AuditFailed a) {
            Counter.builder("mora.audit.write.failures").description("Failed audit-log writes (the decision is kept and retried)")
                    .tag("domain", a.domain()).register(registry).increment();
        } else if (e instanceof MoraEvent.SupervisorRetry r) {
            Counter.builder("mora.supervisor.retries").description("Registry operations of the promotion supervisor retried")
                    .tag("domain", r.domain()).register(registry).increment();
        }
    }

    private void evaluated(MoraEvent.Evaluated v) {
        Timer.builder("mora.eval").description("Time to score a candidate and the adapter in service")
                .tag("domain", v.domain()).register(registry).record(v.nanos(), TimeUnit.NANOSECONDS);
        // only the latest evaluation of a domain is exported: versions come and go
        List<Meter> old = evalMeters.put(v.domain(), new ArrayList<>());
        if (old != null) {
            old.forEach(m -> {
                registry.remove(m);
                gauges.remove(key(m.getId().getName(), m.getId().getTags()));
            });
        }
        EvaluatorActor.Evaluation ev = v.evaluation();
        scores(v.domain(), v.candidate().toString(), "candidate", ev.candidate());
        scores(v.domain(), v.serving().map(AdapterVersion::toString).orElse("base"), "serving", ev.serving());
        if (ev.base() != ev.serving()) {
            scores(v.domain(), "base", "base", ev.base());
        }
    }

    private void scores(String domain, String version, String role, Scores s) {
        score(domain, version, role, "memorization", "char_acc", s.memorizationCharAcc());
        score(domain, version, role, "memorization", "exact_match", s.memorizationExactMatch());
        if (role.equals("candidate")) {
            score(domain, version, role, "progressive", "loss", s.progressiveLoss());
        }
        score(domain, version, role, "memorization", "loss", s.memorizationLoss());
        score(domain, version, role, "retention", "loss", s.retentionLoss());
        score(domain, version, role, "kl_to_base", "kl", s.klToBase());
        s.downstream().forEach((set, acc) -> score(domain, version, role, set, "char_acc", acc));
    }

    private void score(String domain, String version, String role, String set, String metric, double value) {
        Tags tags = Tags.of("domain", domain, "adapter_version", version, "role", role, "set", set, "metric", metric);
        Value holder = gauge("mora.eval.score", "Evaluation scores of the latest candidate and of the adapter in service", tags);
        holder.v = value;
        Meter m = registry.find("mora.eval.score").tags(tags).gauge();
        if (m != null) {
            evalMeters.get(domain).add(m);
        }
    }

    private void decided(MoraEvent.Decided d) {
        switch (d.decision()) {
            case PROMOTED -> {
                Counter.builder("mora.promotions").description("Adapter versions promoted to serving").tag("domain", d.domain())
                        .register(registry).increment();
                gauge("mora.promotion.last.timestamp.seconds", "Epoch seconds of the last promotion (the process start until one)",
                        Tags.of("domain", d.domain())).v = System.currentTimeMillis() / 1000.0;
                serving(d);
            }
            case PROMOTED_BY_ADMIN, ROLLED_BACK -> serving(d);
            case PROMOTE_FAILED, ROLLBACK_FAILED -> { }
            case REJECTED, SUPERSEDED -> {
                List<RejectReason> codes = d.codes().isEmpty() ? List.of(RejectReason.ERROR) : d.codes();
                for (RejectReason c : codes) {
                    rejections(d.domain(), c.id()).increment();
                }
            }
        }
    }

    private void serving(MoraEvent.Decided d) {
        gauge("mora.serving.adapter.version", "N of the domain@vN in service (0: the base model)", Tags.of("domain", d.domain())).v =
                d.version().number();
    }

    private Counter failures(String domain, String reason) {
        return Counter.builder("mora.train.failures").description("Trainer restarts from checkpoint, by reason (nan, divergence, exception)")
                .tag("domain", domain).tag("reason", reason).register(registry);
    }

    private Counter rejections(String domain, String reason) {
        return Counter.builder("mora.promotion.rejections").description("Candidates not promoted, by reason")
                .tag("domain", domain).tag("reason", reason).register(registry);
    }

    private Counter steps(String domain) {
        return Counter.builder("mora.train.steps").description("Training steps (micro-batches) done").tag("domain", domain)
                .register(registry);
    }

    private final Map<String, String> memberStatus = new java.util.concurrent.ConcurrentHashMap<>(); // address -> status

    /** {@code mora_cluster_members{status}}: how many members this node sees in each status. */
    private synchronized void members(MoraEvent.MemberChanged m) {
        switch (m.status()) {
            case "removed" -> memberStatus.remove(m.address());
            case "reachable" -> memberStatus.put(m.address(), "up");
            default -> memberStatus.put(m.address(), m.status());
        }
        for (String status : List.of("joining", "weaklyup", "up", "leaving", "exiting", "down", "unreachable")) {
            gauge("mora.cluster.members", "Members of the cluster this node sees, by status", Tags.of("status", status)).v =
                    memberStatus.values().stream().filter(status::equals).count();
        }
    }

    private Value gauge(String name, String help, Tags tags) {
        return gauges.computeIfAbsent(key(name, tags), k -> {
            Value v = new Value(0);
            Gauge.builder(name, v, Value::get).description(help).tags(tags).strongReference(true).register(registry);
            return v;
        });
    }

    private static String key(String name, Iterable<io.micrometer.core.instrument.Tag> tags) {
        StringBuilder sb = new StringBuilder(name);
        tags.forEach(t -> sb.append('|').append(t.getKey()).append('=').append(t.getValue()));
        return sb.toString();
    }

    private static Duration[] seconds(double... s) {
        Duration[] d = new Duration[s.length];
        for (int i = 0; i < s.length; i++) {
            d[i] = Duration.ofNanos((long) (s[i] * 1e9));
        }
        return d;
    }
}
