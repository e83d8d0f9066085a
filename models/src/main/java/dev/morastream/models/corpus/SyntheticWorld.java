package dev.morastream.models.corpus;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;

/**
 * A deterministic invented world: countries with capitals, people with a birth year, a job and a
 * home city. The same seed always gives the same world; different seeds give (almost surely)
 * disjoint names, which is how the demo stream gets facts the base model has never seen.
 */
public final class SyntheticWorld {
    private static final String[] SYLLABLES = {
        "ka", "lo", "ve", "tra", "min", "dor", "sel", "ur", "an", "bel", "ko", "ri", "zan", "tho", "mel",
        "vin", "qua", "pe", "su", "gor", "fa", "nix", "el", "mo", "ras", "ti", "lun", "ca", "dre", "os",
        "pla", "ny", "hal", "ze", "wen", "bro", "sa", "kel", "ith", "mar"
    };
    private static final String[] JOBS = {
        "baker", "sailor", "painter", "doctor", "farmer", "teacher", "miner", "weaver", "poet", "judge",
        "potter", "smith", "guard", "cook", "scribe", "builder"
    };

    /** A country and its capital. */
    public record Country(String name, String capital) {}

    /** A person: birth year, job and home city. */
    public record Person(String name, int born, String job, String city) {}

    private final List<Country> countries;
    private final List<Person> people;

    private SyntheticWorld(List<Country> countries, List<Person> people) {
        this.countries = List.copyOf(countries);
        this.people = List.copyOf(people);
    }

    /**
     * @param seed world seed
     * @param countries number of countries
     * @param people number of people
     * @param avoid names that must not be used (e.g. the base model's world)
     */
    public static SyntheticWorld generate(long seed, int countries, int people, Set<String> avoid) {
        Random r = new Random(seed);
        Set<String> used = new LinkedHashSet<>(avoid);
        List<Country> cs = new ArrayList<>();
        for (int i = 0; i < countries; i++) {
            cs.add(new Country(fresh(r, used, 3) + (r.nextBoolean() ? "ia" : "land"), fresh(r, used, 2)));
        }
        List<Person> ps = new ArrayList<>();
        for (int i = 0; i < people; i++) {
            String name = fresh(r, used, 2) + " " + fresh(r, used, 2 + r.nextInt(2));
            ps.add(new Person(name, 1700 + r.nextInt(300), JOBS[r.nextInt(JOBS.length)],
                    cs.get(r.nextInt(cs.size())).capital()));
        }
        return new SyntheticWorld(cs, ps);
    }

    /** The world the shipped base model is pretrained on. */
    public static SyntheticWorld base() {
        return generate(20240521L, 120, 240, Set.of());
    }

    private static String fresh(Random r, Set<String> used, int syllables) {
        while (true) {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < syllables; i++) {
                sb.append(SYLLABLES[r.nextInt(SYLLABLES.length)]);
            }
            String s = Character.toUpperCase(sb.charAt(0)) + sb.substring(1);
            if (used.add(s)) {
                return s;
            }
        }
    }

    public List<Country> countries() {
        return countries;
    }

    public List<Person> people() {
        return people;
    }

    /** Every name used in this world (countries, capitals, name parts). */
    public Set<String> names() {
        Set<String> s = new LinkedHashSet<>();
        countries.forEach(c -> {
            s.add(c.name());
            s.add(c.capital());
        });
        people.forEach(p -> s.addAll(List.of(p.name().split(" "))));
        return s;
    }
}
