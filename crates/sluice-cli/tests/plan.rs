//! The plan: chaining decisions with reasons, and slot placement.

use sluice::{Plan, StreamExecutionEnvironment};
use sluice_cli::jobs::wordcount::{word_count, WordCountOptions};

fn vertex<'a>(plan: &'a Plan, name_starts: &str) -> &'a sluice::PlanVertex {
    plan.job_graph
        .iter()
        .find(|v| v.name.starts_with(name_starts))
        .unwrap_or_else(|| panic!("no vertex {name_starts}"))
}

/// The classic example: source and map at parallelism 4, a keyed reduce at
/// parallelism 3, on 2 TaskManagers × 3 slots.
#[test]
fn the_classic_placement_example_shares_four_slots_across_two_task_managers() {
    let input = tempfile::NamedTempFile::new().unwrap();
    let env = StreamExecutionEnvironment::new();
    env.set_mini_cluster(2, 3);
    let options = WordCountOptions {
        parallelism: Some(4),
        reduce_parallelism: Some(3),
        ..WordCountOptions::default()
    };
    word_count(&env, input.path().to_path_buf(), &options).discard().set_parallelism(3);
    let plan = env.explain().unwrap();

    let names: Vec<&str> = plan.job_graph.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, vec!["Source: words -> Flat Map -> Map", "count -> Sink: Discard"]);
    let reduce = vertex(&plan, "count");
    assert_eq!(reduce.parallelism, 3);
    assert_eq!(reduce.inputs.len(), 1);
    assert_eq!(reduce.inputs[0].partitioner, "HASH");
    assert_eq!(
        reduce.inputs[0].chain_broken_because,
        vec![
            "partitioner is HASH (key_by), not FORWARD".to_string(),
            "parallelism differs (4 -> 3)".to_string()
        ]
    );

    // Slot sharing: subtask i of every vertex shares slot i; TaskManager 1 fills first.
    let placed: Vec<(String, usize, usize)> = plan
        .execution_graph
        .vertices
        .iter()
        .flatten()
        .map(|s| (s.name.clone(), s.slot.task_manager, s.slot.slot))
        .collect();
    let source = "Source: words -> Flat Map -> Map";
    let expected = vec![
        (format!("{source} (1/4)"), 0, 0),
        (format!("{source} (2/4)"), 0, 1),
        (format!("{source} (3/4)"), 0, 2),
        (format!("{source} (4/4)"), 1, 0),
        ("count -> Sink: Discard (1/3)".to_string(), 0, 0),
        ("count -> Sink: Discard (2/3)".to_string(), 0, 1),
        ("count -> Sink: Discard (3/3)".to_string(), 0, 2),
    ];
    assert_eq!(placed, expected);
    assert_eq!(plan.execution_graph.slots_used.len(), 4);

    let text = plan.to_string();
    assert!(
        text.contains("== StreamGraph ==")
            && text.contains("== JobGraph ==")
            && text.contains("== ExecutionGraph ==")
    );
    assert!(text.contains("count -> Sink: Discard (3/3) -> TaskManager 1 slot 3"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&plan.to_json()).unwrap();
    assert_eq!(json["job_graph"][1]["inputs"][0]["partitioner"], "HASH");
    assert_eq!(json["execution_graph"]["vertices"][0][3]["slot"]["task_manager"], 1);
}

#[test]
fn disable_chaining_and_start_new_chain_break_chains_and_say_why() {
    let env = StreamExecutionEnvironment::new();
    env.from_sequence(10)
        .map(|i| i + 1)
        .disable_chaining()
        .filter(|i| i % 2 == 0)
        .map(|i| i * 2)
        .start_new_chain()
        .discard();
    let plan = env.explain().unwrap();
    let names: Vec<&str> = plan.job_graph.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, vec!["Source: Sequence", "Map", "Filter", "Map -> Sink: Discard"]);
    assert_eq!(
        vertex(&plan, "Map").inputs[0].chain_broken_because,
        vec!["chaining is disabled on 'Map'"]
    );
    assert_eq!(
        vertex(&plan, "Filter").inputs[0].chain_broken_because,
        vec!["chaining is disabled on 'Map'"]
    );
    assert_eq!(
        vertex(&plan, "Map -> Sink").inputs[0].chain_broken_because,
        vec!["'Map' starts a new chain"]
    );
}

#[test]
fn disabling_chaining_for_the_job_gives_every_operator_its_own_task() {
    let env = StreamExecutionEnvironment::new();
    env.disable_operator_chaining();
    env.from_sequence(10).map(|i| i + 1).discard();
    let plan = env.explain().unwrap();
    assert_eq!(plan.job_graph.len(), 3);
    assert_eq!(
        plan.job_graph[1].inputs[0].chain_broken_because,
        vec!["chaining is disabled for the job"]
    );
}

#[test]
fn slot_sharing_groups_take_separate_slots() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    env.set_mini_cluster(1, 4);
    env.from_sequence(10).map(|i| i + 1).slot_sharing_group("heavy").discard();
    let plan = env.explain().unwrap();
    let slots: Vec<Vec<usize>> = plan
        .execution_graph
        .vertices
        .iter()
        .map(|v| v.iter().map(|s| s.slot.slot).collect())
        .collect();
    // The sink inherits "heavy" from its input, so it chains with the map.
    assert_eq!(slots, vec![vec![0, 1], vec![2, 3]]);
    assert_eq!(
        vertex(&plan, "Map").inputs[0].chain_broken_because,
        vec!["slot sharing groups differ ('default' vs 'heavy')"]
    );
}

#[test]
fn a_job_needing_more_slots_than_the_cluster_has_is_refused_with_the_numbers() {
    let env = StreamExecutionEnvironment::new();
    env.set_mini_cluster(1, 2);
    env.from_sequence(10).set_parallelism(3).discard();
    let err = env.explain().unwrap_err().to_string();
    assert!(err.contains("needs 3 slots") && err.contains("has 2 free"), "{err}");
}

#[test]
fn name_and_uid_appear_in_the_plan() {
    let env = StreamExecutionEnvironment::new();
    env.set_job_parameter("region", "eu");
    env.from_sequence(1).name("numbers").uid("numbers-v1").map(|i| i).name("identity").discard();
    let plan = env.explain().unwrap();
    assert_eq!(plan.stream_graph[0].name, "Source: numbers");
    assert_eq!(plan.stream_graph[0].uid.as_deref(), Some("numbers-v1"));
    assert_eq!(plan.stream_graph[1].name, "identity");
    assert_eq!(plan.job_parameters.get("region").map(String::as_str), Some("eu"));
    assert!(plan.to_string().contains("parameter region = eu"));
}
