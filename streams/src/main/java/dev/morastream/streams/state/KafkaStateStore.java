package dev.morastream.streams.state;

import dev.morastream.streams.state.StateRecords.Manifest;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A {@link StateStore} on a compacted Kafka topic that every node reads, the way Kafka Streams keeps
 * its changelogs; records as in {@link StateRecords}.
 *
 * <h2>Layout</h2>
 * One partition. A commit must become visible all at once, and Kafka orders records only within a
 * partition: with several, a reader could apply one partition's half of a transaction before it has
 * fetched the other's. State is small in records (a value is a handful of chunks) and written
 * rarely (a checkpoint every few minutes per domain), so one partition is not the bottleneck; a
 * deployment that outgrows it runs one store (topic) per concern. Values are cut into chunks of at
 * most {@link Settings#chunkBytes()} (512 KiB by default, under the broker's 1 MiB
 * {@code max.message.bytes}), then one manifest per key names the commit, the chunk count, size and
 * SHA-256.
 *
 * <h2>Atomic commits</h2>
 * A commit is one Kafka transaction (chunks, tombstones of the replaced chunks, manifests), read
 * with {@code isolation.level=read_committed}: an aborted or unfinished one is never seen. Since a
 * reader's poll may end inside a transaction, every manifest lists all keys of its commit, and the
 * materializer applies a commit's manifests only together, once it has seen each of them or a later
 * manifest of the same key (compaction removes a commit's manifests that later commits replaced;
 * that is why a deleted key keeps a small "deleted" manifest rather than a tombstone, which
 * compaction would eventually drop and leave an older commit waiting for it forever).
 *
 * <h2>Reading</h2>
 * Each instance follows the topic from the beginning on its own thread and keeps an index in memory
 * (key → manifest and the offsets of its chunks), not the values: {@link #get} fetches the chunks
 * by offset, checks size and SHA-256, and reports a damaged value (mismatch, missing chunk) as
 * absent in {@link #damaged()}. {@link #open} returns once caught up; {@link #awaitCaughtUp} waits
 * for what others committed since; {@link #commit} returns once its own commit is applied here.
 *
 * <h2>One writer per identity</h2>
 * A store opened with a writer id uses the transactional id {@code morastream-state.TOPIC.WRITER};
 * opening a second one with that id fences the first (Kafka's producer epoch): the older instance's
 * next commit fails with {@link FencedWriterException} and writes nothing. Use one writer id per
 * lineage (e.g. per domain): that is what keeps a zombie trainer from overwriting its successor's
 * checkpoints. Keys must not be written by two writer ids at once (the stale-chunk cleanup of one
 * would not know the other's commits). A store opened without a writer id only reads.
 *
 * <p>A writer that dies mid-commit leaves an open transaction that holds the topic's last stable
 * offset, so no reader sees later commits until the same writer id opens again (which aborts it)
 * or {@link Settings#transactionTimeout()} passes.
 */
public final class KafkaStateStore implements StateStore {
    private static final Logger log = LoggerFactory.getLogger(KafkaStateStore.class);
    /** Most keys in one commit (each manifest lists all of them). */
    public static final int MAX_COMMIT_KEYS = 1000;

    /**
     * How to reach and use the topic.
     *
     * @param clientProps Kafka client settings shared by the admin, producer and consumers
     *     (bootstrap.servers, security); the store sets serializers, isolation and transactions itself
     * @param topic the state topic: created (one partition, compacted) when missing
     * @param writerId identity of the one writer allowed at a time (null: this store only reads)
     * @param chunkBytes largest chunk of a value in one record
     * @param timeout bound on every wait: opening, catching up, a commit, a read
     * @param transactionTimeout how long the broker keeps a dead writer's transaction open
     * @param topicConfigs configs of a topic this store creates, over the defaults
     */
    public record Settings(Map<String, Object> clientProps, String topic, String writerId, int chunkBytes, Duration timeout,
            Duration transactionTimeout, Map<String, String> topicConfigs) {
        public static final int DEFAULT_CHUNK_BYTES = 512 * 1024;

        public Settings {
            clientProps = Map.copyOf(clientProps);
            topicConfigs = Map.copyOf(topicConfigs);
            Objects.requireNonNull(topic, "topic");
            if (chunkBytes < 1) {
                throw new IllegalArgumentException("chunkBytes must be positive, got " + chunkBytes);
            }
        }

        /** Read-only settings with the defaults: 512 KiB chunks, 60 s timeout, 20 s transaction timeout. */
        public static Settings of(Map<String, Object> clientProps, String topic) {
            return new Settings(clientProps, topic, null, DEFAULT_CHUNK_BYTES, Duration.ofSeconds(60), Duration.ofSeconds(20), Map.of());
        }

        public Settings withWriter(String id) {
            return new Settings(clientProps, topic, id, chunkBytes, timeout, transactionTimeout, topicConfigs);
        }

        public Settings withChunkBytes(int n) {
            return new Settings(clientProps, topic, writerId, n, timeout, transactionTimeout, topicConfigs);
        }

        public Settings withTimeout(Duration t) {
            return new Settings(clientProps, topic, writerId, chunkBytes, t, transactionTimeout, topicConfigs);
        }

        public Settings withTransactionTimeout(Duration t) {
            return new Settings(clientProps, topic, writerId, chunkBytes, timeout, t, topicConfigs);
        }

        public Settings withTopicConfigs(Map<String, String> c) {
            return new Settings(clientProps, topic, writerId, chunkBytes, timeout, transactionTimeout, c);
        }

        /** The transactional id of this writer. */
        String transactionalId() {
            return "morastream-state." + topic + "." + writerId;
        }
    }

    /** A key's current value as the index knows it; {@code chunkOffsets} null when damaged. */
    private record Entry(String key, String commit, int chunks, long size, String sha256, long offset, long[] chunkOffsets) {}

    /** A manifest seen, waiting for the rest of its commit. */
    private record Member(Manifest manifest, long offset, long[] chunkOffsets, String missing) {}

    private static final class Pending {
        final String commit;
        final List<String> keys;
        final long firstOffset;
        final Map<String, Member> members = new HashMap<>();

        Pending(String commit, List<String> keys, long firstOffset) {
            this.commit = commit;
            this.keys = keys;
            this.firstOffset = firstOffset;
        }
    }

    private record Seen(long offset, String commit) {}

    private final Settings settings;
    private final TopicPartition tp;
    private final Admin admin;
    private final KafkaConsumer<String, byte[]> follower;
    private final KafkaConsumer<String, byte[]> reader;
    private final Thread thread;
    private final String name;

    // the index, guarded by lock; changed signalled after every applied poll
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final TreeMap<String, Entry> current = new TreeMap<>();
    private final Map<String, Long> applied = new HashMap<>();
    private final Map<String, Seen> latestSeen = new HashMap<>();
    private final Map<String, Long> chunkOffsets = new HashMap<>();
    private final Map<String, Pending> pending = new LinkedHashMap<>();
    private final Map<String, String> damaged = new ConcurrentHashMap<>();
    private long position;
    private Throwable failure;

    private final Object writeLock = new Object();
    private KafkaProducer<String, byte[]> producer;
    private volatile boolean fenced;
    private volatile boolean closed;

    private KafkaStateStore(Settings settings, Admin admin) {
        this.settings = settings;
        this.tp = new TopicPartition(settings.topic(), 0);
        this.admin = admin;
        this.name = settings.topic() + (settings.writerId() == null ? "" : " (writer " + settings.writerId() + ")");
        this.follower = consumer("follow");
        this.reader = consumer("read");
        this.thread = new Thread(this::follow, "mora-state-" + settings.topic());
        this.thread.setDaemon(true);
    }

    /**
     * Opens the store: creates the topic when missing (one partition, {@code cleanup.policy=compact})
     * or checks it, fences an older writer of the same id, and returns once it has read the topic to
     * its end.
     *
     * @throws StateStoreException when the topic exists but cannot hold state (not compacted, more
     *     than one partition, records smaller than a chunk), or the broker does not answer in time
     */
    public static KafkaStateStore open(Settings settings) {
        Admin admin = Admin.create(settings.clientProps());
        KafkaStateStore s;
        try {
            ensureTopic(admin, settings);
            s = new KafkaStateStore(settings, admin);
        } catch (RuntimeException e) {
            admin.close(Duration.ofSeconds(5));
            throw e;
        }
        try {
            s.follower.assign(List.of(s.tp));
            s.follower.seekToBeginning(List.of(s.tp));
            s.reader.assign(List.of(s.tp));
            s.thread.start();
            if (settings.writerId() != null) {
                s.producer = s.newProducer(); // fences the previous instance of this writer, aborts its open transaction
            }
            s.awaitCaughtUp(settings.timeout());
            return s;
        } catch (RuntimeException e) {
            s.close();
            throw e;
        }
    }

    private KafkaConsumer<String, byte[]> consumer(String role) {
        Map<String, Object> p = new HashMap<>(settings.clientProps());
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, IsolationLevel.READ_COMMITTED.toString().toLowerCase(java.util.Locale.ROOT));
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.remove(ConsumerConfig.GROUP_ID_CONFIG);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "mora-state-" + role + "-" + settings.topic() + "-" + UUID.randomUUID().toString().substring(0, 8));
        int fetch = Math.max(1024 * 1024, 4 * settings.chunkBytes());
        p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, fetch);
        p.put(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, Math.max(fetch, 50 * 1024 * 1024));
        return new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer());
    }

    private KafkaProducer<String, byte[]> newProducer() {
        Map<String, Object> p = new HashMap<>(settings.clientProps());
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, settings.transactionalId());
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, (int) settings.transactionTimeout().toMillis());
        p.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Math.max(1024 * 1024, settings.chunkBytes() + 64 * 1024));
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, settings.timeout().toMillis());
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "mora-state-write-" + settings.topic() + "-" + settings.writerId());
        KafkaProducer<String, byte[]> producer = new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
        try {
            producer.initTransactions();
        } catch (RuntimeException e) {
            producer.close(Duration.ZERO);
            throw new StateStoreException("state topic " + settings.topic() + ": cannot start writer " + settings.writerId() + ": " + e, e);
        }
        return producer;
    }

    private static void ensureTopic(Admin admin, Settings s) {
        long t = s.timeout().toMillis();
        Map<String, String> configs = new HashMap<>();
        configs.put(TopicConfig.CLEANUP_POLICY_CONFIG, TopicConfig.CLEANUP_POLICY_COMPACT);
        // replaced chunks stay readable a minute for a read that found them in the index just before
        configs.put(TopicConfig.MIN_COMPACTION_LAG_MS_CONFIG, "60000");
        // compaction never touches the active segment: roll hourly so replaced values are reclaimed
        configs.put(TopicConfig.SEGMENT_MS_CONFIG, "3600000");
        configs.put(TopicConfig.MAX_MESSAGE_BYTES_CONFIG, String.valueOf(Math.max(1024 * 1024 + 12, s.chunkBytes() + 64 * 1024)));
        configs.putAll(s.topicConfigs());
        try {
            admin.createTopics(List.of(new NewTopic(s.topic(), Optional.of(1), Optional.empty()).configs(configs)))
                    .all().get(t, TimeUnit.MILLISECONDS);
            log.info("created the state topic {} (compacted, 1 partition)", s.topic());
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) {
                throw new StateStoreException("cannot create the state topic " + s.topic() + ": " + e.getCause(), e.getCause());
            }
        } catch (TimeoutException e) {
            throw new StateStoreException("state topic " + s.topic() + ": the broker did not answer within " + s.timeout(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new StateStoreException("interrupted while creating the state topic " + s.topic(), e);
        }
        try {
            // a topic just created may not be visible to every metadata request at once: retry until the deadline
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(t);
            TopicDescription d = null;
            while (d == null) {
                try {
                    d = admin.describeTopics(List.of(s.topic())).allTopicNames().get(t, TimeUnit.MILLISECONDS).get(s.topic());
                } catch (ExecutionException e) {
                    if (System.nanoTime() > deadline) {
                        throw e;
                    }
                    Thread.sleep(50); // metadata propagation: no event to wait on
                }
            }
            if (d.partitions().size() != 1) {
                throw new StateStoreException("state topic " + s.topic() + " has " + d.partitions().size()
                        + " partitions; a state topic has exactly one (a commit is atomic only within a partition)");
            }
            ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, s.topic());
            Config c = admin.describeConfigs(List.of(r)).all().get(t, TimeUnit.MILLISECONDS).get(r);
            String policy = c.get(TopicConfig.CLEANUP_POLICY_CONFIG).value();
            if (!TopicConfig.CLEANUP_POLICY_COMPACT.equals(policy.replace(" ", ""))) {
                throw new StateStoreException("state topic " + s.topic() + " exists with cleanup.policy=" + policy
                        + "; a state topic must be compacted only (cleanup.policy=compact), or retention deletes state: "
                        + "alter it (kafka-configs --alter --add-config cleanup.policy=compact) or use another topic");
            }
            int max = Integer.parseInt(c.get(TopicConfig.MAX_MESSAGE_BYTES_CONFIG).value());
            if (max < s.chunkBytes() + 4096) {
                throw new StateStoreException("state topic " + s.topic() + " takes records of at most " + max
                        + " bytes (max.message.bytes), too small for chunks of " + s.chunkBytes() + " bytes: lower the chunk size");
            }
        } catch (ExecutionException e) {
            throw new StateStoreException("cannot describe the state topic " + s.topic() + ": " + e.getCause(), e.getCause());
        } catch (TimeoutException e) {
            throw new StateStoreException("state topic " + s.topic() + ": the broker did not answer within " + s.timeout(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new StateStoreException("interrupted while checking the state topic " + s.topic(), e);
        }
    }

    // ---------------------------------------------------------------- following the topic

    private void follow() {
        try {
            while (!closed) {
                var records = follower.poll(Duration.ofMillis(500));
                long pos = follower.position(tp);
                lock.lock();
                try {
                    for (ConsumerRecord<String, byte[]> r : records) {
                        accept(r);
                    }
                    applyComplete();
                    position = pos;
                    changed.signalAll();
                } finally {
                    lock.unlock();
                }
            }
        } catch (WakeupException e) {
            // closing
        } catch (Throwable e) {
            if (!closed) {
                log.error("state topic {}: the follower stopped: {}", name, e.toString(), e);
                lock.lock();
                try {
                    failure = e;
                    changed.signalAll();
                } finally {
                    lock.unlock();
                }
            }
        }
    }

    /** One record, under the lock. */
    private void accept(ConsumerRecord<String, byte[]> r) {
        String k = r.key();
        if (k == null) {
            log.warn("state topic {}: ignoring a record without a key at offset {}", name, r.offset());
        } else if (k.startsWith(StateRecords.CHUNK)) {
            if (r.value() == null) {
                chunkOffsets.remove(k);
            } else {
                chunkOffsets.put(k, r.offset());
            }
        } else if (k.startsWith(StateRecords.MANIFEST)) {
            String key = k.substring(StateRecords.MANIFEST.length());
            if (r.value() == null) {
                // not written by this store (a deletion is a manifest): a key removed by hand
                latestSeen.put(key, new Seen(r.offset(), ""));
                applyMember(new Member(Manifest.deletion(key, "", List.of(key), "tombstone"), r.offset(), new long[0], null));
                return;
            }
            Manifest m;
            try {
                m = Manifest.decode(key, r.value());
            } catch (IllegalArgumentException e) {
                latestSeen.put(key, new Seen(r.offset(), ""));
                Entry old = current.get(key);
                markDamaged(key, r.offset(), e.getMessage(), old == null ? "" : old.commit(), old == null ? 0 : old.chunks());
                return;
            }
            latestSeen.put(key, new Seen(r.offset(), m.commit()));
            // the chunks come before their manifest in a commit: resolve them now, before a later commit's tombstones
            long[] offsets = new long[m.chunks()];
            String missing = null;
            for (int i = 0; i < m.chunks(); i++) {
                Long o = chunkOffsets.get(StateRecords.chunkKey(key, m.commit(), i));
                if (o == null) {
                    missing = "chunk " + i + " of " + m.chunks() + " (commit " + m.commit() + ") is missing";
                    break;
                }
                offsets[i] = o;
            }
            Pending p = pending.computeIfAbsent(m.commit(), c -> new Pending(c, m.commitKeys(), r.offset()));
            p.members.put(key, new Member(m, r.offset(), missing == null ? offsets : null, missing));
        } else {
            log.warn("state topic {}: ignoring a record with the unknown key {} at offset {}", name, k, r.offset());
        }
    }

    /** Applies every pending commit whose manifests are all seen (or replaced by later ones), oldest first. */
    private void applyComplete() {
        var it = pending.values().iterator();
        while (it.hasNext()) {
            Pending p = it.next();
            boolean complete = true;
            for (String k : p.keys) {
                if (p.members.containsKey(k)) {
                    continue;
                }
                Seen s = latestSeen.get(k);
                if (s == null || s.commit().equals(p.commit) || s.offset() <= p.firstOffset) {
                    complete = false;
                    break;
                }
            }
            if (complete) {
                p.members.values().stream().sorted(java.util.Comparator.comparingLong(Member::offset)).forEach(this::applyMember);
                it.remove();
            }
        }
    }

    private void applyMember(Member m) {
        String key = m.manifest().key();
        Long done = applied.get(key);
        if (done != null && done >= m.offset()) {
            return; // a later value is applied already
        }
        if (m.missing() != null) {
            Seen s = latestSeen.get(key);
            if (s != null && s.offset() > m.offset()) {
                return; // replaced by a later commit that will apply: its chunks went with it
            }
            markDamaged(key, m.offset(), m.missing(), m.manifest().commit(), m.manifest().chunks());
            return;
        }
        applied.put(key, m.offset());
        damaged.remove(key);
        Manifest f = m.manifest();
        if (f.deleted()) {
            current.remove(key);
        } else {
            current.put(key, new Entry(key, f.commit(), f.chunks(), f.size(), f.sha256(), m.offset(), m.chunkOffsets()));
        }
    }

    /**
     * Under the lock: the key's current value is damaged; it stays in the index (without chunk
     * offsets) so that the next commit of the key tombstones the chunks of {@code commit}.
     */
    private void markDamaged(String key, long offset, String why, String commit, int chunks) {
        applied.put(key, offset);
        current.put(key, new Entry(key, commit, chunks, -1, "", offset, null));
        quarantine(key, why);
    }

    private void quarantine(String key, String why) {
        if (!why.equals(damaged.put(key, why))) {
            log.error("state topic {}: the value of {} is damaged and reads as absent until it is written again: {}", name, key, why);
        }
    }

    /**
     * Waits until this instance has applied everything committed to the topic when called (what
     * other nodes committed before is then visible here).
     *
     * @throws StateStoreException when that takes longer than {@code timeout}
     */
    public void awaitCaughtUp(Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        long end;
        try {
            end = admin.listOffsets(Map.of(tp, OffsetSpec.latest()), new ListOffsetsOptions(IsolationLevel.READ_COMMITTED))
                    .partitionResult(tp).get(timeout.toMillis(), TimeUnit.MILLISECONDS).offset();
        } catch (ExecutionException e) {
            throw new StateStoreException("state topic " + name + ": cannot read its end offset: " + e.getCause(), e.getCause());
        } catch (TimeoutException e) {
            throw new StateStoreException("state topic " + name + ": no end offset within " + timeout, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new StateStoreException("interrupted while reading the end of " + name, e);
        }
        awaitIndex(deadline, () -> position >= end, "to read to offset " + end);
    }

    private void awaitIndex(long deadline, java.util.function.BooleanSupplier done, String what) {
        lock.lock();
        try {
            while (!done.getAsBoolean()) {
                requireHealthy();
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new StateStoreException("state topic " + name + ": timed out waiting " + what + " (read to " + position + ")");
                }
                changed.awaitNanos(left);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new StateStoreException("interrupted while waiting " + what, e);
        } finally {
            lock.unlock();
        }
    }

    private void requireHealthy() {
        if (closed) {
            throw new IllegalStateException("state store " + name + " is closed");
        }
        if (failure != null) {
            throw new StateStoreException("state topic " + name + ": the follower failed: " + failure, failure);
        }
    }

    // ---------------------------------------------------------------- reading

    @Override
    public Optional<byte[]> get(String key) {
        StateStore.checkKey(key);
        return Optional.ofNullable(getAll(List.of(key)).get(key));
    }

    @Override
    public Map<String, byte[]> getAll(Collection<String> keys) {
        keys.forEach(StateStore::checkKey);
        for (int attempt = 0; ; attempt++) {
            Map<String, Entry> snapshot = new LinkedHashMap<>();
            lock.lock();
            try {
                requireHealthy();
                for (String k : keys) {
                    Entry e = current.get(k);
                    if (e != null && e.chunkOffsets() != null) {
                        snapshot.put(k, e);
                    }
                }
            } finally {
                lock.unlock();
            }
            Map<String, byte[]> out = new LinkedHashMap<>();
            boolean replacedMeanwhile = false;
            for (Entry e : snapshot.values()) {
                Fetched f = fetch(e);
                if (f.value() != null) {
                    out.put(e.key(), f.value());
                } else if (stillCurrent(e)) {
                    lock.lock();
                    try {
                        if (current.get(e.key()) == e) {
                            current.put(e.key(), new Entry(e.key(), e.commit(), e.chunks(), -1, "", e.offset(), null));
                        }
                    } finally {
                        lock.unlock();
                    }
                    quarantine(e.key(), f.damage());
                } else {
                    replacedMeanwhile = true; // a newer commit replaced it and its chunks: read the new state
                }
            }
            if (!replacedMeanwhile) {
                return out;
            }
            if (attempt >= 5) {
                throw new StateStoreException("state topic " + name + ": " + keys + " kept changing while being read");
            }
        }
    }

    private boolean stillCurrent(Entry e) {
        lock.lock();
        try {
            return current.get(e.key()) == e;
        } finally {
            lock.unlock();
        }
    }

    private record Fetched(byte[] value, String damage) {}

    /** The chunks of {@code e}, fetched by offset and checked. */
    private Fetched fetch(Entry e) {
        long[] offsets = e.chunkOffsets();
        MessageDigest sha = Digests.sha256();
        if (offsets.length == 0) {
            return check(e, new byte[0], sha);
        }
        byte[][] parts = new byte[offsets.length][];
        Map<Long, Integer> index = new HashMap<>();
        for (int i = 0; i < offsets.length; i++) {
            index.put(offsets[i], i);
        }
        long last = offsets[offsets.length - 1];
        long deadline = System.nanoTime() + settings.timeout().toNanos();
        int found = 0;
        synchronized (reader) {
            reader.seek(tp, offsets[0]);
            while (found < offsets.length) {
                if (System.nanoTime() > deadline) {
                    throw new StateStoreException("state topic " + name + ": reading " + e.key() + " timed out after " + settings.timeout());
                }
                for (ConsumerRecord<String, byte[]> r : reader.poll(Duration.ofMillis(200))) {
                    Integer i = index.get(r.offset());
                    if (i != null) {
                        String expected = StateRecords.chunkKey(e.key(), e.commit(), i);
                        if (!expected.equals(r.key()) || r.value() == null) {
                            return new Fetched(null, "offset " + r.offset() + " holds " + r.key()
                                    + (r.value() == null ? " (a tombstone)" : "") + ", not " + expected);
                        }
                        parts[i] = r.value();
                        found++;
                    }
                    if (r.offset() >= last) {
                        break;
                    }
                }
                if (found < offsets.length && reader.position(tp) > last) {
                    for (int i = 0; i < parts.length; i++) {
                        if (parts[i] == null) {
                            return new Fetched(null, "chunk " + i + " of " + offsets.length + " (commit " + e.commit() + ", offset "
                                    + offsets[i] + ") is gone from the topic");
                        }
                    }
                }
            }
        }
        long size = 0;
        for (byte[] p : parts) {
            size += p.length;
        }
        if (size != e.size()) {
            return new Fetched(null, "its chunks have " + size + " bytes, the manifest says " + e.size());
        }
        byte[] value = new byte[(int) size];
        int at = 0;
        for (byte[] p : parts) {
            System.arraycopy(p, 0, value, at, p.length);
            at += p.length;
        }
        return check(e, value, sha);
    }

    private static Fetched check(Entry e, byte[] value, MessageDigest sha) {
        if (value.length != e.size()) {
            return new Fetched(null, "it has " + value.length + " bytes, the manifest says " + e.size());
        }
        String digest = HexFormat.of().formatHex(sha.digest(value));
        if (!digest.equals(e.sha256())) {
            return new Fetched(null, "its SHA-256 is " + digest + ", the manifest says " + e.sha256() + " (commit " + e.commit() + ")");
        }
        return new Fetched(value, null);
    }

    @Override
    public List<String> keys(String prefix) {
        lock.lock();
        try {
            requireHealthy();
            List<String> out = new ArrayList<>();
            for (Entry e : Prefixes.view(current, prefix).values()) {
                if (e.chunkOffsets() != null && !damaged.containsKey(e.key())) {
                    out.add(e.key());
                }
            }
            return out;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public Map<String, String> damaged() {
        return Map.copyOf(damaged);
    }

    // ---------------------------------------------------------------- writing

    @Override
    public void commit(Map<String, byte[]> puts, Set<String> deletes) {
        StateStore.checkCommit(puts, deletes);
        if (puts.size() + deletes.size() > MAX_COMMIT_KEYS) {
            // every manifest lists the keys of its commit
            throw new IllegalArgumentException("a commit of " + (puts.size() + deletes.size()) + " keys; at most " + MAX_COMMIT_KEYS);
        }
        if (settings.writerId() == null) {
            throw new IllegalStateException("state store " + name + " was opened without a writer id: it only reads");
        }
        synchronized (writeLock) {
            if (fenced) {
                throw fencedError(null);
            }
            Map<String, Entry> old = new HashMap<>();
            Set<String> toDelete = new TreeSet<>();
            lock.lock();
            try {
                requireHealthy();
                for (String k : puts.keySet()) {
                    Entry e = current.get(k);
                    if (e != null) {
                        old.put(k, e);
                    }
                }
                for (String k : deletes) {
                    Entry e = current.get(k);
                    if (e != null) {
                        old.put(k, e);
                        toDelete.add(k);
                    }
                }
            } finally {
                lock.unlock();
            }
            if (puts.isEmpty() && toDelete.isEmpty()) {
                return; // deleting absent keys only
            }
            String commit = UUID.randomUUID().toString().replace("-", "");
            List<String> keys = new ArrayList<>(new TreeSet<>(puts.keySet()));
            keys.addAll(toDelete);
            keys.sort(null);
            String topic = settings.topic();
            Map<String, Future<RecordMetadata>> manifests = new LinkedHashMap<>();
            try {
                producer.beginTransaction();
                for (Map.Entry<String, byte[]> p : new TreeMap<>(puts).entrySet()) {
                    List<byte[]> chunks = StateRecords.split(p.getValue(), settings.chunkBytes());
                    for (int i = 0; i < chunks.size(); i++) {
                        producer.send(new ProducerRecord<>(topic, 0, StateRecords.chunkKey(p.getKey(), commit, i), chunks.get(i)));
                    }
                }
                for (Entry e : old.values()) {
                    for (int i = 0; i < e.chunks(); i++) {
                        producer.send(new ProducerRecord<>(topic, 0, StateRecords.chunkKey(e.key(), e.commit(), i), null));
                    }
                }
                for (String k : keys) {
                    byte[] v = puts.get(k);
                    Manifest m = v != null ? Manifest.of(k, commit, keys, v, settings.chunkBytes(), settings.writerId())
                            : Manifest.deletion(k, commit, keys, settings.writerId());
                    manifests.put(k, producer.send(new ProducerRecord<>(topic, 0, StateRecords.manifestKey(k), m.encode())));
                }
                producer.commitTransaction();
            } catch (RuntimeException e) {
                throw failedCommit(e);
            }
            Map<String, Long> offsets = new HashMap<>();
            try {
                for (var m : manifests.entrySet()) {
                    offsets.put(m.getKey(), m.getValue().get(settings.timeout().toMillis(), TimeUnit.MILLISECONDS).offset());
                }
            } catch (ExecutionException | TimeoutException e) {
                throw new StateStoreException("state topic " + name + ": committed, but no offsets of the manifests: " + e, e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new StateStoreException("interrupted after committing to " + name, e);
            }
            // read-your-writes: return once the follower has applied this commit
            awaitIndex(System.nanoTime() + settings.timeout().toNanos(), () -> offsets.entrySet().stream().allMatch(o -> {
                Long done = applied.get(o.getKey());
                return done != null && done >= o.getValue();
            }), "for commit " + commit + " to be applied (committed; an open transaction of another writer may hold it back)");
        }
    }

    /** Under writeLock: the commit did not happen; the writer is fenced or starts a fresh producer. */
    private StateStoreException failedCommit(RuntimeException e) {
        if (isFenced(e)) {
            fenced = true;
            producer.close(Duration.ZERO);
            return fencedError(e);
        }
        try {
            producer.abortTransaction();
        } catch (RuntimeException abort) {
            // a producer that cannot abort is in an error state: a new one aborts what it left open
            producer.close(Duration.ZERO);
            try {
                producer = newProducer();
            } catch (StateStoreException again) {
                if (isFenced(again)) {
                    fenced = true;
                    return fencedError(again);
                }
                e.addSuppressed(again);
            }
        }
        return new StateStoreException("state topic " + name + ": commit did not happen: " + e, e);
    }

    private FencedWriterException fencedError(Throwable cause) {
        return new FencedWriterException(settings.writerId(), "state topic " + settings.topic() + ": writer " + settings.writerId()
                + " is fenced: another store opened with the same writer id (transactional id " + settings.transactionalId()
                + ") and owns it now; this instance cannot write any more", cause);
    }

    private static boolean isFenced(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof ProducerFencedException || t instanceof InvalidProducerEpochException) {
                return true;
            }
        }
        return false;
    }

    /** True once another instance with the same writer id fenced this one. */
    public boolean isFenced() {
        return fenced;
    }

    public Settings settings() {
        return settings;
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        follower.wakeup();
        try {
            thread.join(settings.timeout().toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (!thread.isAlive()) {
            follower.close(Duration.ofSeconds(5));
        }
        synchronized (reader) {
            reader.close(Duration.ofSeconds(5));
        }
        synchronized (writeLock) {
            if (producer != null && !fenced) {
                producer.close(Duration.ofSeconds(5));
            }
        }
        admin.close(Duration.ofSeconds(5));
        lock.lock();
        try {
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }
}
