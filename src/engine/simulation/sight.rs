//! Interest management by distance, for a game's own simulation: each member sees
//! the entities of an owner-only kind within a radius of where it stands (a fog of
//! war, a large arena where nobody needs the far side), shown and hidden through
//! [`World::show`] and [`World::hide`] as things move.
//!
//! The members are put in a grid of cells as wide as the radius, so each entity
//! looks at the members of the nine cells around it, not at every member: a tick
//! costs about `entities × members near each`, not `entities × members`. What each
//! entity is shown to is read from the world itself, so nothing is kept between
//! ticks that could disagree with it (a room restored from a checkpoint, a member
//! that left, an entity removed or given away are all taken as the world has them).

use crate::state::{EntityId, MemberId, World};

/// Shows each entity to the members within a radius of it; see the module
/// documentation. Keeps only scratch space between calls.
#[derive(Debug, Clone)]
pub struct Sight {
    radius: f32,
    /// The members of the latest [`Sight::update`], by cell, then by member.
    grid: Vec<(Cell, MemberId, f32, f32)>,
    near: Vec<MemberId>,
    shown: Vec<MemberId>,
}

/// A grid cell, its x in the high half and its y in the low ([`cell_at`]).
type Cell = i64;

/// What an [`Sight::update`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SightChanges {
    /// (entity, member) pairs newly shown.
    pub shown: usize,
    /// (entity, member) pairs hidden.
    pub hidden: usize,
}

impl Sight {
    /// Members see what is at most `radius` away from them: `dx² + dy² ≤ radius²`
    /// on x and y (in `f32`).
    ///
    /// # Panics
    /// When `radius` is not a positive, finite number.
    pub fn new(radius: f32) -> Self {
        assert!(
            radius.is_finite() && radius > 0.0,
            "a sight radius must be positive and finite"
        );
        Self {
            radius,
            grid: Vec::new(),
            near: Vec::new(),
            shown: Vec::new(),
        }
    }

    /// Shows each of `entities` (id and position) to the `viewers` (member and
    /// position) within the radius of it, and hides it from every member it was
    /// shown to that is not: a member left out of `viewers` (say, one whose player is
    /// dead) is shown none of them. An entity's owner sees it whatever this says, as
    /// does everyone when its kind is not owner-only ([`World::show`] leaves those
    /// as they are); entities left out of `entities`, and those the world does not
    /// hold, are not touched. Give members of the room only (see [`World::show`]); a
    /// position that is not a number (NaN) is near nothing.
    pub fn update(
        &mut self,
        world: &mut World,
        viewers: impl IntoIterator<Item = (MemberId, f32, f32)>,
        entities: impl IntoIterator<Item = (EntityId, f32, f32)>,
    ) -> SightChanges {
        let radius = self.radius;
        self.grid.clear();
        self.grid
            .extend((viewers.into_iter()).map(|(member, x, y)| (cell(radius, x, y), member, x, y)));
        self.grid.sort_unstable_by_key(|&(cell, member, ..)| (cell, member));
        let mut changes = SightChanges::default();
        for (id, x, y) in entities {
            let Some(owner) = world.get(id).map(|e| e.owner()) else {
                continue;
            };
            self.near_to(x, y, owner);
            self.shown.clear();
            self.shown.extend_from_slice(world.shown_to(id));
            self.shown.sort_unstable();
            let (mut near, mut shown) = (self.near.iter().peekable(), self.shown.iter().peekable());
            loop {
                // Both in ascending order: a member in `near` only is shown the
                // entity, one in `shown` only has it hidden.
                let (n, s) = (near.peek().copied().copied(), shown.peek().copied().copied());
                match (n, s) {
                    (None, None) => break,
                    (Some(n), Some(s)) if n == s => {
                        near.next();
                        shown.next();
                    }
                    (Some(n), None) => {
                        near.next();
                        changes.shown += usize::from(world.show(id, n) == Ok(true));
                    }
                    (Some(n), Some(s)) if n < s => {
                        near.next();
                        changes.shown += usize::from(world.show(id, n) == Ok(true));
                    }
                    (_, Some(s)) => {
                        shown.next();
                        changes.hidden += usize::from(world.hide(id, s) == Ok(true));
                    }
                }
            }
        }
        changes
    }

    /// Fills `near` with the viewers within the radius of (`x`, `y`), but `owner`,
    /// in ascending order, each once.
    fn near_to(&mut self, x: f32, y: f32, owner: MemberId) {
        self.near.clear();
        let (cx, cy) = cell_xy(self.radius, x, y);
        let reach = self.radius * self.radius;
        // The three cells of a column follow each other in the grid's order.
        for dx in -1..=1 {
            let column = cx.saturating_add(dx);
            let (first, last) = (
                cell_at(column, cy.saturating_sub(1)),
                cell_at(column, cy.saturating_add(1)),
            );
            let from = self.grid.partition_point(|&(c, ..)| c < first);
            for &(_, member, vx, vy) in self.grid[from..].iter().take_while(|&&(c, ..)| c <= last) {
                let (dx, dy) = (vx - x, vy - y);
                if member != owner && dx * dx + dy * dy <= reach {
                    self.near.push(member);
                }
            }
        }
        self.near.sort_unstable();
        // A column seen twice (at the edge of the grid, where cells saturate), or a
        // member given twice.
        self.near.dedup();
    }
}

/// The grid coordinates of a position, in cells `radius` wide.
fn cell_xy(radius: f32, x: f32, y: f32) -> (i32, i32) {
    // `as` saturates, and takes NaN to 0 (whose distance then rules it out).
    ((x / radius).floor() as i32, (y / radius).floor() as i32)
}

/// The cell of a position.
fn cell(radius: f32, x: f32, y: f32) -> Cell {
    let (cx, cy) = cell_xy(radius, x, y);
    cell_at(cx, cy)
}

/// Cells in the order of x, then y.
fn cell_at(cx: i32, cy: i32) -> Cell {
    (i64::from(cx) << 32) + (i64::from(cy) - i64::from(i32::MIN))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::state::{FieldSpec, FieldType, KindSchema, Schema, Value};

    const HIDDEN: u32 = 1;
    const PUBLIC: u32 = 2;

    fn world() -> World {
        let int = FieldType::int(0, 100).unwrap();
        let hidden = KindSchema::new(HIDDEN, "player", vec![FieldSpec::new(1, "hp", int)]).unwrap();
        let public = KindSchema::new(PUBLIC, "tree", vec![FieldSpec::new(1, "hp", int)]).unwrap();
        World::with_schema(
            8,
            Arc::new(Schema::new(vec![hidden.seen_by_owner_only(), public]).unwrap()),
        )
    }

    /// Entity `id` of `kind`, owned by member `id` (0: the server).
    fn spawn(world: &mut World, id: EntityId, owner: MemberId, kind: u32) {
        world.spawn(id, owner, kind, [(1, Value::Int(1))]).unwrap();
    }

    fn shown(world: &World, id: EntityId) -> BTreeSet<MemberId> {
        world.shown_to(id).iter().copied().collect()
    }

    #[test]
    fn members_see_what_is_within_the_radius_and_stop_seeing_it_as_it_leaves() {
        let mut world = world();
        let mut sight = Sight::new(10.0);
        for m in 1..=3 {
            spawn(&mut world, m, m, HIDDEN);
        }
        // 1 at the origin, 2 at 6 (near 1), 3 at 30 (far from both).
        let mut at = [(1, 0.0, 0.0), (2, 6.0, 8.0), (3, 30.0, 0.0)];
        let changes = sight.update(&mut world, at, at);
        assert_eq!(changes, SightChanges { shown: 2, hidden: 0 });
        assert_eq!(shown(&world, 1), BTreeSet::from([2]), "exactly 10 away counts");
        assert_eq!(shown(&world, 2), BTreeSet::from([1]));
        assert_eq!(shown(&world, 3), BTreeSet::new());
        // The same again: nothing to do.
        assert_eq!(sight.update(&mut world, at, at), SightChanges::default());
        // 2 walks over to 3.
        at[1] = (2, 25.0, 0.0);
        assert_eq!(sight.update(&mut world, at, at), SightChanges { shown: 2, hidden: 2 });
        assert_eq!(
            [1, 2, 3].map(|id| shown(&world, id)),
            [BTreeSet::new(), BTreeSet::from([3]), BTreeSet::from([2])]
        );
    }

    #[test]
    fn a_member_left_out_sees_nothing_and_public_kinds_and_other_entities_are_untouched() {
        let mut world = world();
        let mut sight = Sight::new(10.0);
        spawn(&mut world, 1, 1, HIDDEN);
        spawn(&mut world, 2, 2, HIDDEN);
        spawn(&mut world, 3, 0, PUBLIC);
        spawn(&mut world, 4, 0, HIDDEN);
        world.show(4, 1).unwrap();
        let at = [(1, 0.0, 0.0), (2, 1.0, 0.0)];
        sight.update(&mut world, at, at.into_iter().chain([(3, 0.0, 0.0), (99, 0.0, 0.0)]));
        assert_eq!(shown(&world, 1), BTreeSet::from([2]));
        assert_eq!(shown(&world, 3), BTreeSet::new(), "every member sees it anyway");
        assert_eq!(shown(&world, 4), BTreeSet::from([1]), "not given: left as it is");
        // Member 2 is left out (its player died, say): it is shown nothing any more.
        let changes = sight.update(&mut world, [(1, 0.0, 0.0)], at);
        assert_eq!(changes, SightChanges { shown: 0, hidden: 1 });
        assert_eq!(shown(&world, 1), BTreeSet::new());
        assert_eq!(shown(&world, 2), BTreeSet::from([1]));
    }

    /// Nothing is kept between updates: a world whose shows came from elsewhere (a
    /// room restored from a checkpoint, with a fresh simulation) is put right.
    #[test]
    fn what_the_world_already_shows_is_taken_as_it_is() {
        let mut world = world();
        for m in 1..=3 {
            spawn(&mut world, m, m, HIDDEN);
        }
        world.show(1, 3).unwrap();
        let at = [(1, 0.0, 0.0), (2, 1.0, 0.0), (3, 50.0, 0.0)];
        let changes = Sight::new(10.0).update(&mut world, at, at);
        assert_eq!(changes, SightChanges { shown: 2, hidden: 1 });
        assert_eq!(shown(&world, 1), BTreeSet::from([2]));
    }

    #[test]
    fn far_and_strange_positions_see_only_what_is_near() {
        let mut world = world();
        let mut sight = Sight::new(1.0);
        for m in 1..=5 {
            spawn(&mut world, m, m, HIDDEN);
        }
        let max = f32::MAX;
        let at = [
            (1, max, max),
            (2, max, max),
            (3, f32::NAN, 0.0),
            (4, 0.0, 0.0),
            (5, -max, 0.0),
        ];
        sight.update(&mut world, at, at);
        assert_eq!(shown(&world, 1), BTreeSet::from([2]), "at the grid's edge, once");
        assert_eq!(shown(&world, 2), BTreeSet::from([1]));
        assert_eq!([3, 4, 5].map(|id| shown(&world, id)), [(); 3].map(|_| BTreeSet::new()));
    }

    #[test]
    #[should_panic(expected = "positive and finite")]
    fn a_radius_must_be_positive() {
        Sight::new(0.0);
    }

    proptest! {
        /// After every update, each entity is shown to exactly the members within
        /// the radius but its owner, as counting every pair would say.
        #[test]
        fn shows_match_every_pair_counted(
            radius in 0.5f32..30.0,
            moves in prop::collection::vec(prop::collection::vec((-60f32..60.0, -60f32..60.0, any::<bool>()), 12), 1..6),
        ) {
            let mut world = world();
            let mut sight = Sight::new(radius);
            for m in 1..=12 {
                spawn(&mut world, m, m, HIDDEN);
            }
            for positions in moves {
                // Member m stands where entity m is; those marked false are left out.
                let at: Vec<(MemberId, f32, f32)> = (1..).zip(&positions).map(|(m, &(x, y, _))| (m, x, y)).collect();
                let viewers: Vec<_> = at.iter().zip(&positions).filter(|(_, p)| p.2).map(|(a, _)| *a).collect();
                sight.update(&mut world, viewers.iter().copied(), at.iter().copied());
                for &(id, x, y) in &at {
                    let expected: BTreeSet<MemberId> = (viewers.iter())
                        .filter(|&&(m, vx, vy)| m != id && (vx - x) * (vx - x) + (vy - y) * (vy - y) <= radius * radius)
                        .map(|&(m, ..)| m)
                        .collect();
                    prop_assert_eq!(shown(&world, id), expected);
                }
            }
        }
    }
}
